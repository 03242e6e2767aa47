"""DAC -> voxtok ``dac-*`` layout: transformers ``DacModel`` directories (``hf-dac``) and, through the same
mapping, descript-audio-codec checkpoints (``dac``, see ``dac_pth``).

Layer order. DAC's encoder is ``conv1``, per stride a block of three residual units, Snake and a strided
conv, then Snake and ``conv2``; the decoder mirrors it (Snake, transposed conv, three residual units). voxtok's
SEANet holds the same layers in one flat ``layers`` list, five per stride: the converter computes each index.
Convolutions become weight-norm parametrisations (``original0`` = g, ``original1`` = v): moved as they are when
the source has them, else ``g = |w|``, ``v = w`` (transformers' published DAC weights are folded). The
quantizer is ``ResidualVectorQuantizer.named("dac", ...)`` (cosine search, raw-codebook lookup, as DAC decodes);
its 1x1 projection convs become linear layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict, read_hf_dir
from voxtok.quantizers.rvq import ResidualVectorQuantizer

RES_UNITS = 3  # DAC's blocks always hold three residual units (dilations 1, 3, 9)
PRESET_BY_RATE = {16000: "dac-16khz", 24000: "dac-24khz", 44100: "dac-44khz"}


def dac_config(
    sample_rate: int, encoder_dim: int, encoder_rates: list[int], latent_dim: int, decoder_dim: int,
    decoder_rates: list[int], n_codebooks: int, codebook_size: int, codebook_dim: int,
) -> dict[str, Any]:  # fmt: skip
    """A voxtok codec config with DAC's sizes (names as descript-audio-codec's ``DAC`` arguments)."""
    if decoder_dim % 2 ** len(decoder_rates):
        raise ValueError(f"decoder_dim={decoder_dim} must be divisible by 2^{len(decoder_rates)} (it halves at "
                         f"each of the decoder_rates {decoder_rates})")
    common = {
        "channels": 1, "dimension": latent_dim, "n_residual_layers": RES_UNITS, "residual_kernel_size": 7,
        "dilation_base": 3, "kernel_size": 7, "activation": "snake", "causal": False, "pad_mode": "constant",
        "norm": "weight_norm", "compress": 1, "true_skip": True, "lstm_layers": 0,
    }  # fmt: skip
    enc = {**common, "n_filters": encoder_dim, "ratios": list(encoder_rates), "last_kernel_size": 3,
           "pad_to_hop": True}
    dec = {**common, "n_filters": decoder_dim // 2 ** len(decoder_rates), "ratios": list(decoder_rates),
           "last_kernel_size": 7, "final_activation": "tanh"}
    quantizer = {**ResidualVectorQuantizer.CONFIGS["dac"], "dim": latent_dim, "num_quantizers": n_codebooks,
                 "codebook_size": codebook_size, "codebook_dim": codebook_dim, "quantizer_dropout": 0.5}
    if math.prod(encoder_rates) != math.prod(decoder_rates):
        raise ValueError(f"encoder_rates {encoder_rates} and decoder_rates {decoder_rates} give different hops")
    return {
        "format_version": 1, "name": PRESET_BY_RATE.get(int(sample_rate), "dac"), "sample_rate": int(sample_rate),
        "channels": 1, "causal": False,
        "encoder": {"class": "SEANetEncoder", "args": enc},
        "quantizer": {"class": "ResidualVectorQuantizer", "args": quantizer},
        "decoder": {"class": "SEANetDecoder", "args": dec},
    }  # fmt: skip


def conv(src: Source, prefix: str, target: str) -> None:
    """A DAC convolution ``prefix`` -> voxtok's weight-norm conv ``target`` (bias moved as it is)."""
    if src.has(f"{prefix}.weight_g"):
        src.move(f"{prefix}.weight_g", f"{target}.parametrizations.weight.original0")
        src.move(f"{prefix}.weight_v", f"{target}.parametrizations.weight.original1")
    elif src.has(f"{prefix}.parametrizations.weight.original0"):
        src.move_prefix(f"{prefix}.parametrizations.", f"{target}.parametrizations.")
    else:
        src.weight_norm(f"{prefix}.weight", target)
    src.move(f"{prefix}.bias", f"{target}.bias")


# Source naming: given (part, block index or None, sub-layer) -> the source prefix. transformers and
# descript-audio-codec name the same layers differently; the index arithmetic on the voxtok side is shared.
Namer = Callable[..., str]


def map_dac(src: Source, n_enc: int, n_dec: int, n_codebooks: int, name: Namer) -> None:
    """Map every DAC tensor of ``src`` (named through ``name``) to voxtok's codec names."""
    per = RES_UNITS + 2

    def unit(part: str, block: int, u: int, layer: str) -> None:
        for i, (kind, sub) in enumerate((("snake", "snake1"), ("conv", "conv1"), ("snake", "snake2"),
                                         ("conv", "conv2"))):
            s = name(part, "unit", block, u, sub)
            t = f"{layer}.block.{i}"
            if kind == "conv":
                conv(src, s, f"{t}.conv")
            else:
                src.move(f"{s}.alpha", f"{t}.alpha")

    # encoder
    conv(src, name("encoder", "first"), "encoder.layers.0.conv")
    for b in range(n_enc):
        base = 1 + per * b
        for u in range(RES_UNITS):
            unit("encoder", b, u, f"encoder.layers.{base + u}")
        src.move(f"{name('encoder', 'snake', b)}.alpha", f"encoder.layers.{base + RES_UNITS}.alpha")
        conv(src, name("encoder", "stride", b), f"encoder.layers.{base + RES_UNITS + 1}.conv")
    last = 1 + per * n_enc
    src.move(f"{name('encoder', 'last_snake')}.alpha", f"encoder.layers.{last}.alpha")
    conv(src, name("encoder", "last"), f"encoder.layers.{last + 1}.conv")
    # decoder
    conv(src, name("decoder", "first"), "decoder.layers.0.conv")
    for b in range(n_dec):
        base = 1 + per * b
        src.move(f"{name('decoder', 'snake', b)}.alpha", f"decoder.layers.{base}.alpha")
        conv(src, name("decoder", "stride", b), f"decoder.layers.{base + 1}.conv")
        for u in range(RES_UNITS):
            unit("decoder", b, u, f"decoder.layers.{base + 2 + u}")
    last = 1 + per * n_dec
    src.move(f"{name('decoder', 'last_snake')}.alpha", f"decoder.layers.{last}.alpha")
    conv(src, name("decoder", "last"), f"decoder.layers.{last + 1}.conv")
    # quantizer: 1x1 convs (maybe weight-normed) -> linear layers; the codebook moves as it is
    for i in range(n_codebooks):
        q, t = name("quantizer", "stage", i), f"quantizer.stages.{i}"
        for proj, ours in (("in_proj", "project_in"), ("out_proj", "project_out")):
            w = src.folded(f"{q}.{proj}")
            if w.dim() != 3 or w.shape[-1] != 1:
                raise ValueError(f"{src.label}: tensor {q}.{proj} weight must be a 1x1 conv [out, in, 1]; got "
                                 f"{tuple(w.shape)}")
            src.put(f"{t}.{ours}.weight", w[..., 0], f"{q}.{proj}")
            src.move(f"{q}.{proj}.bias", f"{t}.{ours}.bias")
        cb = src.take(f"{q}.codebook.weight")
        src.put(f"{t}.codebook", cb, f"{q}.codebook.weight")
        # usage counts and the init flag are voxtok training state DAC does not keep: start them fresh
        src.put(f"{t}.ema_count", torch.ones(cb.shape[0]), f"{q}.codebook.weight")
        src.put(f"{t}.initialized", torch.tensor(True), f"{q}.codebook.weight")


def _hf_name(part: str, what: str, block: int | None = None, u: int | None = None, sub: str = "") -> str:
    """transformers' DacModel names."""
    if part == "quantizer":
        return f"quantizer.quantizers.{block}"
    fixed = {"first": "conv1", "last_snake": "snake1", "last": "conv2"}
    if what in fixed:
        return f"{part}.{fixed[what]}"
    if what == "unit":
        return f"{part}.block.{block}.res_unit{u + 1}.{sub}"
    if what == "snake":
        return f"{part}.block.{block}.snake1"
    return f"{part}.block.{block}.{'conv1' if part == 'encoder' else 'conv_t1'}"  # stride


def convert_hf_dac(path: str | Path) -> Codec:
    """Load a transformers DAC directory (``config.json`` + ``model.safetensors``) as a voxtok ``Codec``."""
    label = str(path)
    cfg, state = read_hf_dir(path, "dac")
    enc_rates = [int(r) for r in cfg.get("downsampling_ratios", [2, 4, 8, 8])]
    dec_rates = [int(r) for r in cfg.get("upsampling_ratios", [8, 8, 4, 2])]
    n_q = int(cfg.get("n_codebooks", 32))
    config = dac_config(
        sample_rate=int(cfg.get("sampling_rate", 16000)), encoder_dim=int(cfg.get("encoder_hidden_size", 64)),
        encoder_rates=enc_rates, latent_dim=int(cfg.get("hidden_size", 1024)),
        decoder_dim=int(cfg.get("decoder_hidden_size", 1536)), decoder_rates=dec_rates, n_codebooks=n_q,
        codebook_size=int(cfg.get("codebook_size", 1024)), codebook_dim=int(cfg.get("codebook_dim", 8)),
    )  # fmt: skip
    codec = Codec.from_config(config)
    src = Source(state, label)
    map_dac(src, len(enc_rates), len(dec_rates), n_q, _hf_name)
    return load_strict(codec, src)
