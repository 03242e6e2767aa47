"""transformers ``Xcodec2Model`` (``save_pretrained`` directory) -> voxtok ``xcodec2-50hz`` layout, encoder included.

What converts, tensor for tensor:

- encoder (``XCodec2Encoder``): ``semantic_encoder.*`` (w2v-BERT 2.0, transformers' own ``Wav2Vec2BertModel``
  built from the checkpoint's ``semantic_model_config``: names as they are) -> ``encoder.semantic.*``;
  ``semantic_adapter.convN`` -> ``encoder.adapter.convN.conv``; ``fc_encoder`` -> ``encoder.fuse``; the BigCodec
  stack ``acoustic_encoder.*`` -> ``encoder.acoustic.*`` (``conv1`` / ``conv2`` -> ``conv_in`` / ``conv_out``,
  ``block.i.res_unitJ`` -> ``blocks.i.units.(J-1)``, ``snakeK`` -> ``actK`` (the block's and the final one:
  ``act`` / ``act_out``), the block's strided ``conv1`` -> ``down``; convolutions gain voxtok's ``.conv``). The
  anti-aliasing filters are not stored: both sides compute them from the same formula.
- quantizer (``FiniteScalarQuantizer.named("xcodec2")``, X-codec2's double-bounded FSQ): ``quantizer.project_in`` /
  ``project_out``; the 4^8 grid has no weights.
- decoder (``VocosTransformerDecoder``): ``fc``, ``embed``, ResNet blocks, Transformer with q / k / v fused into
  ``in_proj``, final norm, iSTFT head.

``Codec.encode(audio)`` makes the filterbank features itself (torch, to the recipe of transformers'
``Xcodec2FeatureExtractor``) and gives ``Xcodec2Model.encode``'s codes on the inputs that extractor makes, whenever
the length is not a multiple of 320 samples. The extractor appends one sample of silence before padding to whole
frames, so for whole-frame input transformers encodes one frame more (and its filterbank statistics include that
frame): encode ``F.pad(audio, (0, 1))`` to reproduce its codes at every length. Codes -> audio matches
``Xcodec2Model.decode``. The semantic model needs transformers at run time.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict, read_hf_dir, require
from voxtok.quantizers.fsq import FiniteScalarQuantizer

# voxtok encoder name -> transformers name, first match wins (names under `encoder.`).
_ENCODER_NAMES = [
    (r"semantic\.(.+)", r"semantic_encoder.\1"),
    (r"adapter\.(conv\d)\.conv\.(.+)", r"semantic_adapter.\1.\2"),
    (r"fuse\.(.+)", r"fc_encoder.\1"),
    (r"acoustic\.conv_in\.conv\.(.+)", r"acoustic_encoder.conv1.\1"),
    (r"acoustic\.conv_out\.conv\.(.+)", r"acoustic_encoder.conv2.\1"),
    (r"acoustic\.act_out\.(.+)", r"acoustic_encoder.snake1.\1"),
    (r"acoustic\.blocks\.(\d+)\.act\.(.+)", r"acoustic_encoder.block.\1.snake1.\2"),
    (r"acoustic\.blocks\.(\d+)\.down\.conv\.(.+)", r"acoustic_encoder.block.\1.conv1.\2"),
    (r"acoustic\.blocks\.(\d+)\.units\.(\d)\.act([12])\.(.+)",
     lambda m: f"acoustic_encoder.block.{m[1]}.res_unit{int(m[2]) + 1}.snake{m[3]}.{m[4]}"),
    (r"acoustic\.blocks\.(\d+)\.units\.(\d)\.conv([12])\.conv\.(.+)",
     lambda m: f"acoustic_encoder.block.{m[1]}.res_unit{int(m[2]) + 1}.conv{m[3]}.{m[4]}"),
]  # fmt: skip


def _source_name(name: str) -> str:
    """The transformers tensor behind voxtok's ``encoder.<name>``."""
    for pattern, repl in _ENCODER_NAMES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, repl, name)
    raise ValueError(f"no X-codec2 tensor maps to voxtok's encoder.{name}")  # a part changed under the converter


def config_from_hf(cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """A voxtok codec config with the sizes of a transformers ``Xcodec2Config`` dict."""
    require(cfg, "hidden_act", "silu", label, "voxtok's Vocos Transformer MLP is SiLU")
    require(cfg, "attention_bias", False, label, "voxtok's attention projections have no bias")
    require(cfg, "sampling_rate", 16000, label, "the semantic features are w2v-BERT 2.0's 16 kHz filterbanks")
    hidden, heads = int(cfg.get("hidden_size", 1024)), int(cfg.get("num_attention_heads", 16))
    if int(cfg.get("num_key_value_heads") or heads) != heads:
        raise ValueError(f"{label}: num_key_value_heads={cfg.get('num_key_value_heads')} differs from "
                         f"num_attention_heads={heads} (grouped-query attention is not supported)")
    if int(cfg.get("head_dim") or hidden // heads) * heads != hidden:
        raise ValueError(f"{label}: head_dim={cfg.get('head_dim')} x {heads} heads != hidden_size={hidden}")
    ratios = [int(r) for r in cfg.get("downsampling_ratios", (2, 2, 4, 4, 5))]
    hop = math.prod(ratios)
    if hop != 320:
        raise ValueError(f"{label}: downsampling_ratios={ratios} give a hop of {hop} samples; X-codec2's encoder "
                         f"needs 320 (two 10 ms filterbank frames per token)")
    semantic = cfg.get("semantic_model_config")
    if not isinstance(semantic, dict):
        raise ValueError(f"{label}: config.json has no semantic_model_config (the w2v-BERT 2.0 config)")
    dim = int(cfg.get("quantization_dim", 2048))
    if dim != hidden + int(semantic.get("hidden_size", 1024)):
        raise ValueError(f"{label}: quantization_dim={dim} != hidden_size {hidden} + the semantic model's "
                         f"hidden_size {semantic.get('hidden_size', 1024)} (the width of the fused latents)")
    levels = [int(v) for v in cfg.get("quantization_levels", [4] * 8)]
    encoder = {"semantic_model": semantic, "acoustic_dim": hidden,
               "acoustic_channels": int(cfg.get("encoder_hidden_size", 48)), "ratios": ratios}
    decoder = {"dimension": dim, "dim": hidden, "num_heads": heads,
               "intermediate_dim": int(cfg.get("intermediate_size", 4096)),
               "num_layers": int(cfg.get("num_hidden_layers", 12)), "n_fft": 4 * hop, "hop_length": hop,
               "dropout": float(cfg.get("activation_dropout", 0.1))}
    return {
        "format_version": 1, "name": "xcodec2-50hz", "sample_rate": 16000, "channels": 1, "causal": False,
        "encoder": {"class": "XCodec2Encoder", "args": encoder},
        "quantizer": {"class": "FiniteScalarQuantizer",
                      "args": {**FiniteScalarQuantizer.CONFIGS["xcodec2"], "dim": dim, "levels": levels}},
        "decoder": {"class": "VocosTransformerDecoder", "args": decoder},
    }  # fmt: skip


def convert_hf_xcodec2(path: str | Path) -> Codec:
    """Load a transformers X-codec2 directory as a voxtok ``Codec`` (see the module doc)."""
    label = str(path)
    cfg, state = read_hf_dir(path, "xcodec2")
    config = config_from_hf(cfg, label)
    codec = Codec.from_config(config)
    src = Source(state, label)
    # Driven by voxtok's encoder names, so a missing tensor is reported under its transformers name.
    for name in codec.encoder.state_dict():
        src.move(_source_name(name), f"encoder.{name}")
    for proj in ("project_in", "project_out"):
        src.move_prefix(f"quantizer.{proj}.", f"quantizer.{proj}.")
    layers = int(cfg.get("num_hidden_layers", 12))
    for i in range(layers):
        p = f"acoustic_decoder.layers.{i}.self_attn"
        q, k, v = (src.take(f"{p}.{n}_proj.weight") for n in "qkv")
        # X-codec2 rotates q and k of a head by the same angle (RoPE over the head axis), which leaves every
        # q.k product unchanged; so the rows need no reordering (docs/models.md).
        src.put(f"decoder.layers.{i}.self_attn.in_proj.weight", torch.cat([q, k, v]), f"{p}.q_proj.weight")
    renames = (("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2"),
               ("self_attn.o_proj", "self_attn.out_proj"), ("head.linear", "head.out"))
    for name in [k for k in src.state if k.startswith("acoustic_decoder.")]:
        target = "decoder." + name[len("acoustic_decoder.") :]
        for theirs, ours in renames:
            target = target.replace(theirs, ours)
        src.move(name, target)
    return load_strict(codec, src)
