"""Float64 brute force, the ground truth for both implementations (tiny shapes only: it builds [N, K])."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def brute_distances(x: Tensor, codebook: Tensor, metric: str = "l2") -> Tensor:
    """``[N, K]`` exact squared distances in float64 (of the unit vectors for ``"cosine"``)."""
    x64, c64 = x.double(), codebook.double()
    if metric == "cosine":
        x64, c64 = F.normalize(x64, dim=1), F.normalize(c64, dim=1)
    return ((x64[:, None, :] - c64[None, :, :]) ** 2).sum(-1)


def assert_nearest(
    x: Tensor, codebook: Tensor, indices: Tensor, distances: Tensor, metric: str = "l2", tol: float = 1e-5
) -> None:
    """Each chosen code is within ``tol * (1 + ||x||^2 + max ||c||^2)`` of the exact best, and ``distances`` is
    the exact distance to the chosen code (to fp32 precision)."""
    assert indices.dtype == torch.int64 and distances.dtype == torch.float32
    assert indices.shape == distances.shape == (x.shape[0],)
    d = brute_distances(x, codebook, metric)
    best = d.min(dim=1).values
    chosen = d.gather(1, indices[:, None].long()).squeeze(1)
    scale = 1.0 + (x.double() ** 2).sum(1) + (codebook.double() ** 2).sum(1).max()
    if metric == "cosine":
        scale = torch.full_like(scale, 4.0)
    assert torch.all(chosen <= best + tol * scale), (chosen - best).max()
    torch.testing.assert_close(distances.double(), chosen, rtol=1e-5, atol=tol * scale.max().item())


def integer_data(n: int, k: int, d: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Small-integer x and codebook: every distance is exact in fp32, so ties are real ties."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(-2, 3, (n, d), generator=g).float(),
        torch.randint(-2, 3, (k, d), generator=g).float(),
    )
