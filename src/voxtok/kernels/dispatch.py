"""One entry point per operation; picks the implementation from the tensors' device."""

from __future__ import annotations

import torch
from torch import Tensor


def nearest(
    x: Tensor, codebook: Tensor, metric: str = "l2", codebook_sqnorm: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Nearest codebook row for every row of ``x``.

    Args:
        x: ``[N, D]`` floating queries.
        codebook: ``[K, D]`` floating codes.
        metric: ``"l2"`` (squared Euclidean) or ``"cosine"`` (both sides l2-normalised first).
        codebook_sqnorm: optional precomputed ``[K]`` squared norms of the codebook rows.

    Returns:
        ``(indices [N] int64, distances [N] float32)``; ties go to the lowest index, as ``torch.argmin``.
    """
    # Plain body until the chunked reference and the Triton kernel land (kernels issue).
    x32, c32 = x.float(), codebook.float()
    if metric == "cosine":
        x32 = torch.nn.functional.normalize(x32, dim=-1)
        c32 = torch.nn.functional.normalize(c32, dim=-1)
    sq = (c32 * c32).sum(-1) if codebook_sqnorm is None else codebook_sqnorm.float()
    d = sq[None, :] - 2.0 * x32 @ c32.t()
    dist, idx = d.min(dim=1)
    return idx, dist + (x32 * x32).sum(-1)


def lookup(indices: Tensor, codebook: Tensor) -> Tensor:
    """Rows of ``codebook [K, D]`` at ``indices [...]`` -> ``[..., D]``; differentiable to the codebook."""
    return torch.nn.functional.embedding(indices, codebook)
