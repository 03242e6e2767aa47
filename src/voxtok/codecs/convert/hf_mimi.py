"""transformers ``MimiModel`` (``save_pretrained`` directory) -> voxtok ``mimi-12.5hz`` layout, and the pieces
moshi's converter (``moshi_mimi``) shares.

The codec is an ``EncoderChain`` (SEANet, causal Transformer, strided conv to the frame rate) and its mirror
``DecoderChain``, with ``SplitResidualVectorQuantizer.named("mimi", ...)`` (one projection per group, as Mimi;
the ``mimi-12.5hz`` preset's per-stage projections cannot hold Mimi's weights). Mapping:

- SEANet: names equal voxtok's (``layers.N.conv`` ...), plain convolutions (Mimi has no weight norm).
- Transformer: q / k / v are fused into ``in_proj`` and the q / k rows of each head reordered from
  rotate-half to adjacent-pair RoPE order (voxtok's RoPE is one complex multiply over adjacent pairs).
- Codebooks: ``embed_sum / max(cluster_usage, eps)`` is the codebook; ``embed_sum`` / ``cluster_usage`` /
  ``initialized`` become voxtok's EMA state.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict, read_hf_dir, require
from voxtok.models.seanet import SEANetDecoder, SEANetEncoder
from voxtok.quantizers.rvq import SplitResidualVectorQuantizer

CODEBOOK_EPS = 1e-5  # Mimi's codebook = embed_sum / cluster_usage.clamp(min=1e-5)


def mimi_config(
    *, sample_rate: int, dimension: int, n_filters: int, ratios_decoder_order: list[int], n_residual_layers: int,
    kernel_size: int, last_kernel_size: int, residual_kernel_size: int, dilation_base: int, compress: int,
    true_skip: bool, num_layers: int, num_heads: int, dim_feedforward: int, context: int, layer_scale: float,
    max_period: float, downsample: int, num_quantizers: int, num_semantic: int, codebook_size: int, code_dim: int,
) -> dict[str, Any]:  # fmt: skip
    """A voxtok codec config with a Mimi's sizes."""
    seanet = {"dimension": dimension, "n_filters": n_filters, "n_residual_layers": n_residual_layers,
              "kernel_size": kernel_size, "last_kernel_size": last_kernel_size,
              "residual_kernel_size": residual_kernel_size, "dilation_base": dilation_base, "compress": compress,
              "true_skip": true_skip, "causal": True, "pad_mode": "constant", "norm": "none", "lstm_layers": 0}
    enc = {**copy.deepcopy(SEANetEncoder.CONFIGS["mimi"]), **seanet, "ratios": ratios_decoder_order[::-1]}
    dec = {**copy.deepcopy(SEANetDecoder.CONFIGS["mimi"]), **seanet, "ratios": list(ratios_decoder_order)}
    transformer = {"d_model": dimension, "num_heads": num_heads, "num_layers": num_layers,
                   "dim_feedforward": dim_feedforward, "context": context, "layer_scale": layer_scale,
                   "norm": "layer_norm", "max_period": max_period}
    enc_stages = [{"class": "SEANetEncoder", "args": enc}, {"class": "CausalTransformer", "args": transformer}]
    dec_stages = [{"class": "CausalTransformer", "args": transformer}, {"class": "SEANetDecoder", "args": dec}]
    if downsample > 1:
        enc_stages.append({"class": "FrameDownsample", "args": {"dimension": dimension, "stride": downsample}})
        dec_stages.insert(0, {"class": "FrameUpsample", "args": {"dimension": dimension, "stride": downsample}})
    quantizer = {**SplitResidualVectorQuantizer.CONFIGS["mimi"], "dim": dimension, "code_dim": code_dim,
                 "num_quantizers": num_quantizers, "codebook_size": codebook_size, "num_semantic": num_semantic,
                 "quantizer_dropout": 0.5}
    return {
        "format_version": 1, "name": "mimi-12.5hz", "sample_rate": sample_rate, "channels": 1, "causal": True,
        "encoder": {"class": "EncoderChain", "args": {"stages": enc_stages}},
        "quantizer": {"class": "SplitResidualVectorQuantizer", "args": quantizer},
        "decoder": {"class": "DecoderChain", "args": {"stages": dec_stages}},
    }  # fmt: skip


def rope_pairs(w: Tensor, heads: int) -> Tensor:
    """q / k projection rows from rotate-half order (``[x_0..x_{h/2-1}, y_0..]`` per head) to adjacent pairs."""
    out_dim, in_dim = w.shape
    hd = out_dim // heads
    return w.reshape(heads, 2, hd // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def codebook(src: Source, prefix: str, target: str,
             names: tuple[str, str, str] = ("embed_sum", "cluster_usage", "initialized")) -> None:
    """Mimi's EMA codebook (sum, usage, init flag: ``names`` under ``prefix``) -> a voxtok EMA stage."""
    sum_name, usage_name, init_name = (f"{prefix}.{n}" for n in names)
    s, n = src.take(sum_name), src.take(usage_name)
    if s.dim() != 2 or n.shape != s.shape[:1]:
        raise ValueError(f"{src.label}: tensor {sum_name} {tuple(s.shape)} and {usage_name} {tuple(n.shape)} "
                         f"do not form a [K, D] codebook with [K] counts")
    src.put(f"{target}.codebook", s / n.clamp(min=CODEBOOK_EPS)[:, None], sum_name)
    src.put(f"{target}.ema_sum", s, sum_name)
    src.put(f"{target}.ema_count", n, usage_name)
    src.put(f"{target}.initialized", src.take(init_name).reshape(()).bool(), init_name)


def projection(src: Source, name: str, target: str, dim: int) -> None:
    """A bias-free 1x1 conv ``[out, in, 1]`` -> a linear weight ``[out, in]``; an absent one (Mimi omits it
    when the code space is as wide as the latents) is the identity."""
    if not src.has(name):
        src.put(f"{target}.weight", torch.eye(dim), name)
        return
    w = src.take(name)
    if w.dim() != 3 or w.shape[-1] != 1:
        raise ValueError(f"{src.label}: tensor {name!r} must be a 1x1 conv weight [out, in, 1]; got {tuple(w.shape)}")
    src.put(f"{target}.weight", w[..., 0], name)


def _hf_transformer(src: Source, prefix: str, target: str, num_layers: int, heads: int) -> None:
    for i in range(num_layers):
        p, t = f"{prefix}.layers.{i}", f"{target}.layers.{i}"
        q, k, v = (src.take(f"{p}.self_attn.{n}_proj.weight") for n in "qkv")
        src.put(f"{t}.self_attn.in_proj.weight", torch.cat([rope_pairs(q, heads), rope_pairs(k, heads), v]),
                f"{p}.self_attn.q_proj.weight")
        for theirs, ours in (("self_attn.o_proj.weight", "self_attn.out_proj.weight"),
                             ("input_layernorm.weight", "norm1.weight"), ("input_layernorm.bias", "norm1.bias"),
                             ("post_attention_layernorm.weight", "norm2.weight"),
                             ("post_attention_layernorm.bias", "norm2.bias"),
                             ("self_attn_layer_scale.scale", "layer_scale_1.scale"),
                             ("mlp_layer_scale.scale", "layer_scale_2.scale"),
                             ("mlp.fc1.weight", "mlp.fc1.weight"), ("mlp.fc2.weight", "mlp.fc2.weight")):
            src.move(f"{p}.{theirs}", f"{t}.{ours}")


def config_from_hf(cfg: dict[str, Any], label: str) -> dict[str, Any]:
    """A voxtok codec config with the sizes of a transformers ``MimiConfig`` dict."""
    require(cfg, "audio_channels", 1, label, "voxtok codecs are mono")
    require(cfg, "use_causal_conv", True, label, "Mimi's convolutions are causal")
    require(cfg, "pad_mode", "constant", label, "streaming needs constant padding")
    require(cfg, "hidden_act", "gelu", label, "voxtok's Transformer MLP is GELU")
    require(cfg, "attention_bias", False, label, "voxtok's attention projections have no bias")
    require(cfg, "trim_right_ratio", 1.0, label, "voxtok's causal transposed convs trim on the right")
    hidden, heads = int(cfg.get("hidden_size", 512)), int(cfg.get("num_attention_heads", 8))
    if int(cfg.get("num_key_value_heads", heads)) != heads:
        raise ValueError(f"{label}: num_key_value_heads={cfg.get('num_key_value_heads')} differs from "
                         f"num_attention_heads={heads} (grouped-query attention is not supported)")
    if int(cfg.get("head_dim") or hidden // heads) * heads != hidden:
        raise ValueError(f"{label}: head_dim={cfg.get('head_dim')} x {heads} heads != hidden_size={hidden}")
    groups = int(cfg.get("upsample_groups", hidden))
    if groups != hidden:
        raise ValueError(f"{label}: upsample_groups={groups} (voxtok's FrameUpsample is depthwise: {hidden})")
    rope = cfg.get("rope_parameters") or {}
    ratios = [int(r) for r in cfg.get("upsampling_ratios") or [8, 6, 5, 4]]
    sr = int(cfg.get("sampling_rate", 24000))
    encodec_rate = math.ceil(sr / math.prod(ratios))
    frame_rate = cfg.get("frame_rate")
    downsample = 2 if frame_rate is None else round(encodec_rate / float(frame_rate))
    return mimi_config(
        sample_rate=sr, dimension=hidden, n_filters=int(cfg.get("num_filters", 64)), ratios_decoder_order=ratios,
        n_residual_layers=int(cfg.get("num_residual_layers", 1)), kernel_size=int(cfg.get("kernel_size", 7)),
        last_kernel_size=int(cfg.get("last_kernel_size", 3)),
        residual_kernel_size=int(cfg.get("residual_kernel_size", 3)),
        dilation_base=int(cfg.get("dilation_growth_rate", 2)), compress=int(cfg.get("compress", 2)),
        true_skip=not bool(cfg.get("use_conv_shortcut", False)), num_layers=int(cfg.get("num_hidden_layers", 8)),
        num_heads=heads, dim_feedforward=int(cfg.get("intermediate_size", 2048)),
        context=int(cfg.get("sliding_window", 250)), layer_scale=float(cfg.get("layer_scale_initial_scale", 0.01)),
        max_period=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))), downsample=downsample,
        num_quantizers=int(cfg.get("num_quantizers", 32)), num_semantic=int(cfg.get("num_semantic_quantizers", 1)),
        codebook_size=int(cfg.get("codebook_size", 2048)),
        code_dim=int(cfg.get("vector_quantization_hidden_dimension", 256)),
    )  # fmt: skip


def convert_hf_mimi(path: str | Path) -> Codec:
    """Load a transformers Mimi directory (``config.json`` + ``model.safetensors``) as a voxtok ``Codec``."""
    label = str(path)
    cfg, state = read_hf_dir(path, "mimi")
    config = config_from_hf(cfg, label)
    codec = Codec.from_config(config)
    heads = int(cfg.get("num_attention_heads", 8))
    layers = int(cfg.get("num_hidden_layers", 8))
    sem = int(cfg.get("num_semantic_quantizers", 1))
    n_q = int(cfg.get("num_quantizers", 32))
    src = Source(state, label)
    # transformers saves Mimi flat (``encoder.``, ``encoder_transformer.``, ``downsample.`` ..., as the published
    # checkpoints); the in-memory module nests the halves (``encoder.encoder_seanet.`` ...). Read either.
    if src.has("downsample.conv.weight"):
        names = {"enc": "encoder.", "enc_tr": "encoder_transformer", "down": "downsample", "up": "upsample",
                 "dec_tr": "decoder_transformer", "dec": "decoder."}
    else:
        names = {"enc": "encoder.encoder_seanet.", "enc_tr": "encoder.encoder_transformer",
                 "down": "encoder.downsample", "up": "decoder.upsample", "dec_tr": "decoder.decoder_transformer",
                 "dec": "decoder.decoder_seanet."}
    if len(config["encoder"]["args"]["stages"]) != 3:
        raise ValueError(f"{label}: frame_rate {cfg.get('frame_rate')} leaves no downsampling step (not supported)")
    src.move_prefix(names["enc"], "encoder.stages.0.")
    _hf_transformer(src, names["enc_tr"], "encoder.stages.1", layers, heads)
    src.move(f"{names['down']}.conv.weight", "encoder.stages.2.conv.conv.weight")
    src.move(f"{names['up']}.conv.weight", "decoder.stages.0.conv.conv.weight")
    _hf_transformer(src, names["dec_tr"], "decoder.stages.1", layers, heads)
    src.move_prefix(names["dec"], "decoder.stages.2.")
    for group, count in (("semantic", sem), ("acoustic", n_q - sem)):
        p, t = f"quantizer.{group}_residual_vector_quantizer", f"quantizer.{group}"
        projection(src, f"{p}.input_proj.weight", f"{t}.input_proj", codec.quantizer.dim)
        projection(src, f"{p}.output_proj.weight", f"{t}.output_proj", codec.quantizer.dim)
        for i in range(count):
            codebook(src, f"{p}.layers.{i}.codebook", f"{t}.stages.{i}")
    return load_strict(codec, src)
