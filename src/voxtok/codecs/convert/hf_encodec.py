"""transformers ``EncodecModel`` (``save_pretrained`` directory) -> voxtok ``encodec-24khz`` layout.

The SEANet names are already voxtok's (``encoder.layers.*``, ``decoder.layers.*``, weight norm as
parametrisations); the RVQ's EMA codebooks map ``embed`` / ``embed_avg`` / ``cluster_size`` / ``inited`` to a
stage's ``codebook`` / ``ema_sum`` / ``ema_count`` / ``initialized``. Only the 24 kHz layout is represented:
mono, no input normalisation, no chunking (the 48 kHz model has all three).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict, read_hf_dir, rename_weight_norm, require


def config_from_hf(cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """A voxtok codec config (``Codec.from_config``) with the sizes of a transformers ``EncodecConfig`` dict."""
    require(cfg, "audio_channels", 1, label, "voxtok codecs are mono")
    require(cfg, "normalize", False, label, "input RMS normalisation with a transmitted scale")
    require(cfg, "chunk_length_s", None, label, "overlapping-chunk encoding with linear overlap-add")
    require(cfg, "norm_type", "weight_norm", label, "time-group norm convolutions")
    ratios = [int(r) for r in cfg.get("upsampling_ratios", [8, 5, 4, 2])]
    hidden = int(cfg.get("hidden_size", 128))
    codebook_dim = cfg.get("codebook_dim") or hidden
    if codebook_dim != hidden:
        raise ValueError(f"{label}: codebook_dim={codebook_dim} differs from hidden_size={hidden} (EnCodec has no "
                         f"codebook projection)")
    seanet = {
        "channels": 1, "dimension": hidden, "n_filters": int(cfg.get("num_filters", 32)),
        "n_residual_layers": int(cfg.get("num_residual_layers", 1)),
        "residual_kernel_size": int(cfg.get("residual_kernel_size", 3)),
        "dilation_base": int(cfg.get("dilation_growth_rate", 2)), "kernel_size": int(cfg.get("kernel_size", 7)),
        "last_kernel_size": int(cfg.get("last_kernel_size", 7)), "activation": "elu",
        "causal": bool(cfg.get("use_causal_conv", True)), "pad_mode": cfg.get("pad_mode", "reflect"),
        "norm": "weight_norm", "compress": int(cfg.get("compress", 2)),
        "true_skip": not bool(cfg.get("use_conv_shortcut", True)), "lstm_layers": int(cfg.get("num_lstm_layers", 2)),
    }  # fmt: skip
    if seanet["causal"]:
        require(cfg, "trim_right_ratio", 1.0, label, "voxtok's causal transposed convolutions trim on the right")
    sr = int(cfg.get("sampling_rate", 24000))
    hop = math.prod(ratios)
    # transformers: frame_rate = ceil(sr / hop); num_quantizers = 1000 * max bandwidth // (frame_rate * bits).
    bits = math.ceil(math.log2(int(cfg.get("codebook_size", 1024))))
    frame_rate = math.ceil(sr / hop)
    bandwidths = cfg.get("target_bandwidths", [1.5, 3.0, 6.0, 12.0, 24.0])
    num_q = int(1000 * bandwidths[-1] // (frame_rate * bits))
    if num_q < 1:
        raise ValueError(f"{label}: target_bandwidths {bandwidths} give no codebook at {frame_rate} frames/s")
    quantizer = {
        "class": "ResidualVectorQuantizer",
        "args": {"dim": hidden, "num_quantizers": num_q, "codebook_size": int(cfg.get("codebook_size", 1024)),
                 "quantizer_dropout": 0.5},
    }
    return {
        "format_version": 1, "name": "encodec-24khz", "sample_rate": sr, "channels": 1, "causal": False,
        "encoder": {"class": "SEANetEncoder", "args": {**seanet, "ratios": ratios[::-1]}},
        "quantizer": quantizer,
        "decoder": {"class": "SEANetDecoder", "args": {**seanet, "ratios": ratios}},
    }  # fmt: skip


def convert_hf_encodec(path: str | Path) -> Codec:
    """Load a transformers EnCodec directory (``config.json`` + ``model.safetensors``) as a voxtok ``Codec``."""
    label = str(path)
    cfg, state = read_hf_dir(path, "encodec")
    codec = Codec.from_config(config_from_hf(cfg, label))
    src = Source(rename_weight_norm(state), label)
    src.move_prefix("encoder.", "encoder.")
    src.move_prefix("decoder.", "decoder.")
    for i in range(codec.num_codebooks):
        pre = f"quantizer.layers.{i}.codebook."
        for theirs, ours in (("embed", "codebook"), ("embed_avg", "ema_sum"), ("cluster_size", "ema_count"),
                             ("inited", "initialized")):
            value = src.take(pre + theirs)
            if theirs == "inited":
                value = value.reshape(())  # transformers stores a one-element float vector
            src.put(f"quantizer.stages.{i}.{ours}", value, pre + theirs)
    return load_strict(codec, src)
