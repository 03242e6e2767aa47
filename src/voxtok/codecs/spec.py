"""The fields that identify a codec's tokens, shared by ``audio_tokenizer.json`` and an extraction's
``manifest.json``, so that a corpus and the tokenizer that reads it can be checked against each other.

``codec_spec(codec, n_q)`` gives the fields; ``check_spec(expected, found, where)`` raises a ``ValueError``
naming every field that differs. ``codec_hash`` covers the codec's config (every constructor argument) and every
tensor of its state dict, so two codecs with the same hash give the same codes for the same audio.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from voxtok._version import __version__

SPEC_VERSION = 1

# Fields that must agree for tokens to be interchangeable (the version of voxtok that wrote them need not).
SPEC_KEYS = ("codec", "codec_hash", "sample_rate", "frame_rate", "hop_length", "n_q", "codebook_sizes")


def codec_hash(codec: nn.Module) -> str:
    """``sha256:<hex>`` of the codec's config (without the voxtok version) and every state-dict tensor.

    Tensors are hashed in name order with their dtype and shape, from their raw bytes, so the hash is the same
    on every device and changes when any weight, buffer (EMA codebooks included) or constructor argument does.
    """
    h = hashlib.sha256()
    config = dict(codec.config()) if hasattr(codec, "config") else {}
    config.pop("voxtok_version", None)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, t in sorted(codec.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def codec_spec(codec: nn.Module, n_q: int | None = None) -> dict[str, Any]:
    """The identifying fields of ``codec``'s tokens with the first ``n_q`` codebooks (default: all).

    Returns a JSON-ready dict: ``codec`` (preset or model name), ``codec_hash``, ``sample_rate``,
    ``frame_rate``, ``hop_length``, ``n_q``, ``num_codebooks`` (the codec's total), ``codebook_sizes`` (the
    first ``n_q``), ``voxtok_version`` and ``spec_version``.
    """
    q = int(codec.num_codebooks)
    n_q = q if n_q is None else int(n_q)
    if not 1 <= n_q <= q:
        raise ValueError(f"n_q must be in [1, {q}]; got {n_q}")
    return {
        "spec_version": SPEC_VERSION,
        "codec": codec.name or "custom",
        "codec_hash": codec_hash(codec),
        "sample_rate": int(codec.sample_rate),
        "frame_rate": float(codec.frame_rate),
        "hop_length": int(codec.hop_length),
        "n_q": n_q,
        "num_codebooks": q,
        "codebook_sizes": [int(k) for k in codec.codebook_sizes[:n_q]],
        "voxtok_version": __version__,
    }


def check_spec(expected: Mapping[str, Any], found: Mapping[str, Any], where: str,
               keys: tuple[str, ...] = SPEC_KEYS) -> None:
    """Raise ``ValueError`` naming each of ``keys`` whose value differs between the two specs.

    ``where`` names the file or object ``found`` came from, so the error says what to fix.
    """
    if int(found.get("spec_version", SPEC_VERSION)) > SPEC_VERSION:
        raise ValueError(f"{where}: spec_version {found.get('spec_version')} is newer than this voxtok reads "
                         f"({SPEC_VERSION}); upgrade voxtok")
    diffs = [f"{k}: expected {expected.get(k)!r}, found {found.get(k)!r}" for k in keys
             if _norm(expected.get(k)) != _norm(found.get(k))]
    if diffs:
        raise ValueError(f"{where} was made with a different codec or settings; " + "; ".join(diffs))


def _norm(v: Any) -> Any:
    # JSON turns tuples into lists and may turn 12.5 into 12.5 or 12.50000001 through other writers.
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, float):
        return round(v, 9)
    return v
