"""descript-audio-codec ``.pth`` checkpoints (``DAC.load``'s format) -> voxtok ``dac-*`` layout.

The file is a pickle holding ``{"state_dict": ..., "metadata": {"kwargs": DAC constructor arguments}}``. A
pickle can run code while it is read, so ``convert`` only opens it when the caller passes ``trust_pickle``, and
even then through ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.

Names are descript's ``nn.Sequential`` indices (``encoder.block.1.block.0.block.1`` ...); convolutions hold
old-style weight norm (``weight_g`` / ``weight_v``), moved as they are to voxtok's ``original0`` / ``original1``.
The layer arithmetic and the quantizer mapping are ``hf_dac``'s.

Frames: descript's DAC pads the input to a whole number of hops, as voxtok does (``ceil(samples / hop)``);
transformers' port does not pad and floors instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict
from voxtok.codecs.convert.hf_dac import RES_UNITS, dac_config, map_dac

# descript's DAC defaults (dac/model/dac.py), used for any argument the metadata leaves out.
DEFAULTS: dict[str, Any] = {
    "encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": None, "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8,
    "sample_rate": 44100,
}  # fmt: skip


def descript_namer(n_enc: int, n_dec: int) -> Callable[..., str]:
    """descript-audio-codec's names for the layers ``map_dac`` asks for (``n_enc`` / ``n_dec`` strided blocks)."""
    inner = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}

    def name(part: str, what: str, block: int | None = None, u: int | None = None, sub: str = "") -> str:
        if part == "quantizer":
            return f"quantizer.quantizers.{block}"
        seq, n_blocks = ("encoder.block", n_enc) if part == "encoder" else ("decoder.model", n_dec)
        fixed = {"first": 0, "last_snake": n_blocks + 1, "last": n_blocks + 2}
        if what in fixed:
            return f"{seq}.{fixed[what]}"
        b = f"{seq}.{int(block) + 1}.block"  # type: ignore[arg-type]
        if part == "encoder":  # residual units 0-2, Snake 3, strided conv 4
            if what == "unit":
                return f"{b}.{u}.block.{inner[sub]}"
            return f"{b}.{RES_UNITS if what == 'snake' else RES_UNITS + 1}"
        if what == "unit":  # decoder: Snake 0, transposed conv 1, residual units 2-4
            return f"{b}.{int(u) + 2}.block.{inner[sub]}"  # type: ignore[arg-type]
        return f"{b}.{0 if what == 'snake' else 1}"

    return name


def read_pth(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(kwargs, state_dict)`` of a descript DAC ``.pth``, read with ``torch.load(weights_only=True)``."""
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses arbitrary objects: say so instead of a bare unpickling error
        raise ValueError(f"{path}: cannot be read as a weights-only checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: expected descript's {{'state_dict', 'metadata'}} checkpoint; got {keys}")
    kwargs = (ckpt.get("metadata") or {}).get("kwargs") or {}
    return {**DEFAULTS, **kwargs}, dict(ckpt["state_dict"])


def convert_dac_pth(path: str | Path) -> Codec:
    """Load a descript-audio-codec ``.pth`` as a voxtok ``Codec`` (the caller has decided to trust the pickle)."""
    kw, state = read_pth(path)
    if not isinstance(kw["codebook_dim"], int):
        raise ValueError(f"{path}: codebook_dim={kw['codebook_dim']!r}: per-stage code dims are not supported")
    enc_rates, dec_rates = [int(r) for r in kw["encoder_rates"]], [int(r) for r in kw["decoder_rates"]]
    latent = kw["latent_dim"] or int(kw["encoder_dim"]) * 2 ** len(enc_rates)
    config = dac_config(
        sample_rate=int(kw["sample_rate"]), encoder_dim=int(kw["encoder_dim"]), encoder_rates=enc_rates,
        latent_dim=int(latent), decoder_dim=int(kw["decoder_dim"]), decoder_rates=dec_rates,
        n_codebooks=int(kw["n_codebooks"]), codebook_size=int(kw["codebook_size"]),
        codebook_dim=int(kw["codebook_dim"]),
    )  # fmt: skip
    codec = Codec.from_config(config)
    src = Source(state, str(path))
    map_dac(src, len(enc_rates), len(dec_rates), int(kw["n_codebooks"]), descript_namer(len(enc_rates), len(dec_rates)))
    return load_strict(codec, src)
