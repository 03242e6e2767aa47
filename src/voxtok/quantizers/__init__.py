"""Quantizers: VQ, RVQ (and Mimi's split RVQ), FSQ (and residual FSQ), a pass-through; codebook balancing.
Published variants are options of these classes with named configurations: ``ResidualVectorQuantizer.named("dac")``,
``SplitResidualVectorQuantizer.named("mimi")``, ``FiniteScalarQuantizer.named("xcodec2")``.

Every quantizer follows one contract (``Quantizer`` in ``base.py``): ``forward(z [B, D, T], mask [B, T])``
returns a ``QuantizerOutput``; ``encode`` / ``decode`` map latents to ``[B, Q, T]`` int64 codes and back.
"""

from __future__ import annotations

from voxtok.quantizers.base import Quantizer
from voxtok.quantizers.fsq import FiniteScalarQuantizer, ResidualFSQ
from voxtok.quantizers.identity import IdentityQuantizer
from voxtok.quantizers.rvq import ResidualVectorQuantizer, SplitResidualVectorQuantizer
from voxtok.quantizers.vq import VectorQuantizer
from voxtok.types import QuantizerOutput

__all__ = [
    "FiniteScalarQuantizer",
    "IdentityQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualFSQ",
    "ResidualVectorQuantizer",
    "SplitResidualVectorQuantizer",
    "VectorQuantizer",
]
