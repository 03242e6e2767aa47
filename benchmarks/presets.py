"""Parameter counts of every full-size preset beside its anchor's, and the presets' frame facts.

Anchors built offline from transformers configs (random weights) where transformers has the model; the others
are the published figures. Prints a markdown table (docs/presets.md keeps a copy).

    python benchmarks/presets.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import gc
import logging

import torch

from voxtok.codecs import Codec, preset_config, presets


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _hf_anchor(kind: str) -> int:
    import transformers as tf

    if kind == "dac-16khz":
        m = tf.DacModel(tf.DacConfig(sampling_rate=16000, n_codebooks=12, hop_length=320,
                                     downsampling_ratios=[2, 4, 5, 8], upsampling_ratios=[8, 5, 4, 2]))
    elif kind == "dac-24khz":
        m = tf.DacModel(tf.DacConfig(sampling_rate=24000, n_codebooks=32, hop_length=320,
                                     downsampling_ratios=[2, 4, 5, 8], upsampling_ratios=[8, 5, 4, 2]))
    elif kind == "dac-44khz":
        m = tf.DacModel(tf.DacConfig())
    elif kind == "encodec-24khz":
        m = tf.EncodecModel(tf.EncodecConfig())
    elif kind == "mimi-12.5hz":
        m = tf.MimiModel(tf.MimiConfig(num_quantizers=8))
    elif kind == "xcodec2-50hz":
        m = tf.Xcodec2Model(tf.Xcodec2Config())
    else:
        raise KeyError(kind)
    n = _count(m)
    del m
    gc.collect()
    return n


# Anchors transformers does not build: not measured here (no offline implementation to count).
PUBLISHED = {
    "wavtokenizer-75hz": "not in transformers",
    "wavtokenizer-40hz": "not in transformers",
    "dmcodec-50hz": "not in transformers",
    "cat-12.5hz": "not in transformers (MOSS-Audio-Tokenizer is about 1.6B as published; preset is CAT small)",
    "lmspt-25hz": "n/a (LM-SPT-style variant of Mimi)",
    "lmspt-12.5hz": "n/a (LM-SPT-style variant of Mimi)",
    "lmspt-6.25hz": "n/a (LM-SPT-style variant of Mimi)",
}
HF_ANCHORS = {"dac-16khz", "dac-24khz", "dac-44khz", "encodec-24khz", "mimi-12.5hz", "xcodec2-50hz"}


def main() -> None:
    logging.getLogger("voxtok").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="preset names (default: every full-size preset)")
    args = parser.parse_args()
    names = args.only or [p for p in presets() if not p.endswith("-tiny")]
    print("| preset | sample rate | frame rate (Hz) | codebooks x size | kbps | voxtok params | anchor params |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        codec = Codec.from_config(preset_config(name))
        n = _count(codec)
        facts = (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size, codec.bitrate)
        del codec
        gc.collect()
        anchor = f"{_hf_anchor(name) / 1e6:.1f}M (transformers)" if name in HF_ANCHORS else PUBLISHED.get(name, "")
        sr, fr, q, k, br = facts
        print(f"| {name} | {sr} | {fr:g} | {q} x {k} | {br / 1000:.2f} | {n / 1e6:.1f}M | {anchor} |", flush=True)


if __name__ == "__main__":
    main()
