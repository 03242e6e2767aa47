"""Mimi's split RVQ: each group (semantic, acoustic) projects the latents once into its code space, runs its
residual stages there, and projects the sum back.

``SplitResidualVectorQuantizer`` projects per stage (every stage has its own in / out projection and the
residual lives in latent space), which is not the same function: Mimi's residual lives in the 256-dim code
space, behind one bias-free 1x1 projection per group. Published Mimi weights (moshi, transformers) need this
layout, so converted Mimi checkpoints use ``MimiSplitResidualVectorQuantizer``; its stages are voxtok's
``ResidualVectorQuantizer`` (EMA codebooks, k-means init, dead-code restart), so training works as for any
voxtok RVQ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from voxtok.quantizers.base import Quantizer
from voxtok.quantizers.rvq import ResidualVectorQuantizer, SplitResidualVectorQuantizer
from voxtok.types import QuantizerOutput

__all__ = ["MimiSplitResidualVectorQuantizer", "ProjectedResidualVectorQuantizer"]


def _apply(proj: nn.Linear, z: Tensor) -> Tensor:
    """A bias-free 1x1 projection on ``[B, D, T]`` (as a matmul over channels, in float32)."""
    return torch.einsum("oi,bit->bot", proj.weight.float(), z.float())


class ProjectedResidualVectorQuantizer(Quantizer):
    """``output_proj(RVQ(input_proj(z)))``: one residual quantizer in a projected code space.

    Args:
        dim: latent dim ``D`` of ``[B, D, T]``. code_dim: the code space the residual stages work in.
        num_quantizers, codebook_size, quantizer_dropout and the ``VectorQuantizer`` settings: passed to the
            inner ``ResidualVectorQuantizer`` (with ``codebook_dim=None``: no per-stage projections).
    """

    accepts_prefix = True

    def __init__(self, dim: int, code_dim: int, num_quantizers: int, codebook_size: int | Sequence[int],
                 **rvq_args: object) -> None:  # fmt: skip
        super().__init__()
        self.dim, self.code_dim = dim, code_dim
        self.input_proj = nn.Linear(dim, code_dim, bias=False)
        self.output_proj = nn.Linear(code_dim, dim, bias=False)
        self.rvq = ResidualVectorQuantizer(code_dim, num_quantizers, codebook_size, **rvq_args)  # type: ignore[arg-type]
        self.num_codebooks = self.rvq.num_codebooks
        self.codebook_size = self.rvq.codebook_size

    @property
    def codebook_sizes(self) -> list[int]:
        return self.rvq.codebook_sizes

    def _encode(self, z: Tensor, n: int) -> Tensor:
        return self.rvq._encode(_apply(self.input_proj, z), n)

    def _decode(self, codes: Tensor) -> Tensor:
        return _apply(self.output_proj, self.rvq._decode(codes))

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        out = self.rvq._forward(_apply(self.input_proj, z), mask)
        return QuantizerOutput(z_q=_apply(self.output_proj, out.z_q), codes=out.codes, loss=out.loss,
                               metrics=out.metrics)


class MimiSplitResidualVectorQuantizer(SplitResidualVectorQuantizer):
    """Mimi's quantizer: a semantic ``ProjectedResidualVectorQuantizer`` (first ``num_semantic`` codes) and an
    acoustic one (the rest), both over the same latents; ``z_q`` is their sum.

    Args:
        dim: latent dim ``D`` (Mimi: 512). code_dim: each group's code space (Mimi: 256).
        num_quantizers: all codebooks ``Q`` (transformers' Mimi: 32). codebook_size: ``K`` (Mimi: 2048).
        num_semantic: semantic codebooks (Mimi: 1).
        quantizer_dropout: acoustic-group prefix dropout in training. Other keywords: ``VectorQuantizer``
            settings for every stage (Mimi trains EMA codebooks, decay 0.99).
    """

    accepts_prefix = True

    def __init__(self, dim: int, code_dim: int, num_quantizers: int, codebook_size: int, num_semantic: int = 1,
                 quantizer_dropout: float = 0.0, **vq_args: object) -> None:  # fmt: skip
        Quantizer.__init__(self)  # the groups are built here, not by SplitResidualVectorQuantizer
        if not 1 <= num_semantic < num_quantizers:
            raise ValueError(f"MimiSplitResidualVectorQuantizer: need 1 <= num_semantic < num_quantizers; got "
                             f"{num_semantic} and {num_quantizers}")
        self.dim, self.code_dim = dim, code_dim
        self.num_codebooks, self.num_semantic, self.codebook_size = num_quantizers, num_semantic, codebook_size
        self.semantic = ProjectedResidualVectorQuantizer(dim, code_dim, num_semantic, codebook_size, **vq_args)
        self.acoustic = ProjectedResidualVectorQuantizer(
            dim, code_dim, num_quantizers - num_semantic, codebook_size, quantizer_dropout=quantizer_dropout,
            **vq_args,
        )  # fmt: skip
