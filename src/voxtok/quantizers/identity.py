"""A pass-through quantizer for testing the parts around a quantizer (moshi's ``DummyQuantizer``)."""

from __future__ import annotations

import torch
from torch import Tensor

from voxtok.quantizers.base import Quantizer
from voxtok.types import QuantizerOutput

__all__ = ["IdentityQuantizer"]

_BITS = 32


class IdentityQuantizer(Quantizer):
    """``z_q = z``, lossless: the codes are the float32 bit patterns of the latents.

    One codebook per feature (``num_codebooks = dim``) of ``2**32`` codes, so ``codes [B, D, T]`` int64 hold
    each value's IEEE-754 bits as an unsigned integer and ``decode(encode(z)) == z`` bit for bit. Loss is 0;
    ``metrics`` is empty. Meant for tests and ablations, not for token streams.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"IdentityQuantizer: dim must be a positive int; got {dim!r}")
        self.dim = dim
        self.num_codebooks = dim
        self.codebook_size = 2**_BITS

    def _encode(self, z: Tensor, n: int) -> Tensor:
        return z.float().contiguous().view(torch.int32).long() & (2**_BITS - 1)

    def _decode(self, codes: Tensor) -> Tensor:
        signed = torch.where(codes >= 2 ** (_BITS - 1), codes - 2**_BITS, codes)
        return signed.to(torch.int32).view(torch.float32)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        z_q = z.float()
        return QuantizerOutput(z_q=z_q, codes=self._encode(z.detach(), self.dim), loss=z_q.new_zeros(()), metrics={})
