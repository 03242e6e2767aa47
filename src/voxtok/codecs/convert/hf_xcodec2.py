"""transformers ``Xcodec2Model`` (``save_pretrained`` directory) -> voxtok ``xcodec2-50hz`` layout, decode-only.

What converts: the FSQ (``quantizer.project_in`` / ``project_out``; the 4^8 grid has no weights) and the whole
decoder (``VocosTransformerDecoder``: ``fc``, ``embed``, ResNet blocks, Transformer with q / k / v fused into
``in_proj``, final norm, iSTFT head). Codes -> audio matches transformers' ``Xcodec2Model.decode``.

What does not: X-codec2's encoder is a BigCodec conv stack with anti-aliased SnakeBeta activations plus a
w2v-BERT 2.0 semantic model fed with filterbank features, fused by ``fc_encoder``; and its quantizer bounds the
projected latents twice (``bound`` then FSQ's own ``bound``). voxtok has none of these parts, so the converted
codec's encoder is an ``UnavailableEncoder`` that explains this, and the encoder's tensors
(``semantic_encoder.*``, ``semantic_adapter.*``, ``acoustic_encoder.*``, ``fc_encoder.*``) are read and left
out on purpose. Speech-LLM TTS (Llasa) only needs decoding; to tokenise audio, encode with transformers and
decode with voxtok.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict, read_hf_dir, require

ENCODER_PREFIXES = ("semantic_encoder.", "semantic_adapter.", "acoustic_encoder.", "fc_encoder.")
NO_ENCODER = (
    "X-codec2 was converted decode-only (its BigCodec + w2v-BERT 2.0 encoder has no voxtok equivalent); encode "
    "with transformers' Xcodec2Model.encode and pass the codes [B, 1, T] to decode()"
)


def config_from_hf(cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """A voxtok codec config (decode-only) with the sizes of a transformers ``Xcodec2Config`` dict."""
    require(cfg, "hidden_act", "silu", label, "voxtok's Vocos Transformer MLP is SiLU")
    require(cfg, "attention_bias", False, label, "voxtok's attention projections have no bias")
    hidden, heads = int(cfg.get("hidden_size", 1024)), int(cfg.get("num_attention_heads", 16))
    if int(cfg.get("num_key_value_heads") or heads) != heads:
        raise ValueError(f"{label}: num_key_value_heads={cfg.get('num_key_value_heads')} differs from "
                         f"num_attention_heads={heads} (grouped-query attention is not supported)")
    if int(cfg.get("head_dim") or hidden // heads) * heads != hidden:
        raise ValueError(f"{label}: head_dim={cfg.get('head_dim')} x {heads} heads != hidden_size={hidden}")
    hop = math.prod(int(r) for r in cfg.get("downsampling_ratios", (2, 2, 4, 4, 5)))
    dim = int(cfg.get("quantization_dim", 2048))
    levels = [int(v) for v in cfg.get("quantization_levels", [4] * 8)]
    decoder = {"dimension": dim, "dim": hidden, "num_heads": heads,
               "intermediate_dim": int(cfg.get("intermediate_size", 4096)),
               "num_layers": int(cfg.get("num_hidden_layers", 12)), "n_fft": 4 * hop, "hop_length": hop,
               "dropout": float(cfg.get("activation_dropout", 0.1))}
    return {
        "format_version": 1, "name": "xcodec2-50hz", "sample_rate": int(cfg.get("sampling_rate", 16000)),
        "channels": 1, "causal": False,
        "encoder": {"class": "UnavailableEncoder", "args": {"dimension": dim, "hop_length": hop, "reason": NO_ENCODER}},
        "quantizer": {"class": "FiniteScalarQuantizer", "args": {"dim": dim, "levels": levels}},
        "decoder": {"class": "VocosTransformerDecoder", "args": decoder},
    }  # fmt: skip


def convert_hf_xcodec2(path: str | Path) -> Codec:
    """Load a transformers X-codec2 directory as a decode-only voxtok ``Codec`` (see the module doc)."""
    label = str(path)
    cfg, state = read_hf_dir(path, "xcodec2")
    config = config_from_hf(cfg, label)
    codec = Codec.from_config(config)
    src = Source(state, label)
    for name in [k for k in src.state if k.startswith(ENCODER_PREFIXES)]:
        src.take(name)  # the encoder side: not represented (module doc)
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
