"""Exact nearest codes on latents far from the origin (the cancellation of ``|x|^2 - 2 x.c + |c|^2``).

The data are the issue's table: a codebook ``randn(K, D) + m`` and queries near its rows (noise 0.5). fp32
``matmul + argmin`` and ``cdist`` pick wrong codes there (checked below, so the data keep discriminating); the CPU
path must return the float64 argmin, and the Triton kernel (interpreted, small shapes) the float64 argmin except
where the two best distances are within 1e-6 (relative) of each other. The full-size table (N=20000) is slow.
"""

from __future__ import annotations

import pytest
import torch

from voxtok.kernels import nearest
from voxtok.kernels.triton_nearest import nearest_triton


def offset_data(n: int, k: int, d: int, offset: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(k, d, generator=g) + offset
    x = c[torch.randint(0, k, (n,), generator=g)] + 0.5 * torch.randn(n, d, generator=g)
    return x, c


def exact_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``[N, K]`` squared distances in float64, translated by the codebook mean first (float64 on translated data
    is exact to ~1e-16 of the spread, whatever the offset)."""
    mu = c.double().mean(0)
    x64, c64 = x.double() - mu, c.double() - mu
    return ((c64 * c64).sum(1) - 2 * x64 @ c64.T + (x64 * x64).sum(1, keepdim=True)).clamp_min(0)


def wrong(d: torch.Tensor, idx: torch.Tensor, rel: float = 0.0) -> int:
    """Rows whose chosen code is farther than the best by more than ``rel`` (relative)."""
    best = d.min(dim=1).values
    chosen = d.gather(1, idx[:, None]).squeeze(1)
    return int((chosen > best * (1 + rel)).sum())


# (D, offset, wrong indices of fp32 matmul + argmin at least): N=2000, K=2048 (the issue's table has N=20000).
TABLE = [(8, 30, 0), (8, 100, 1), (8, 300, 50), (8, 1000, 400), (128, 1000, 20)]


@pytest.mark.parametrize(("d", "offset", "anchor_wrong"), TABLE)
def test_cpu_path_is_the_float64_argmin_far_from_the_origin(d: int, offset: float, anchor_wrong: int) -> None:
    x, c = offset_data(2000, 2048, d, offset)
    dist = exact_distances(x, c)
    matmul = ((c * c).sum(1) - 2 * x @ c.T).argmin(1)
    assert wrong(dist, matmul) >= anchor_wrong  # the data still defeat fp32 scores about the origin
    torch.set_num_threads(2)  # two worker threads
    idx, got = nearest(x, c)
    assert torch.equal(idx, dist.argmin(dim=1))
    torch.testing.assert_close(got.double(), dist.gather(1, idx[:, None]).squeeze(1), rtol=1e-5, atol=1e-5)


def near_ties(n: int, d: int, offset: float, t: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries a fraction ``t`` of the way from the midpoint of two codes towards one of them: the two best
    distances differ by ~8t (relative), far below what fp32 resolves about the origin at this offset."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(2 * n, d, generator=g) + offset
    a, b = c[0::2], c[1::2]
    sign = torch.where(torch.rand(n, 1, generator=g) < 0.5, 1.0, -1.0)
    return (a + b) / 2 + sign * t * (a - b), c


@pytest.mark.parametrize("d", [8, 128])
def test_cpu_path_resolves_near_ties_far_from_the_origin(d: int) -> None:
    x, c = near_ties(300, d, 1000.0, 1e-4)
    dist = exact_distances(x, c)
    assert wrong(dist, ((c * c).sum(1) - 2 * x @ c.T).argmin(1)) > 30
    idx, _ = nearest(x, c)
    assert torch.equal(idx, dist.argmin(dim=1))


@pytest.mark.parametrize("d", [8, 64])
def test_cpu_path_resolves_ties_finer_than_fp32(d: int) -> None:
    # Near the origin, two codes whose distances differ by 1e-7 to 1e-5 (relative; x itself is rounded to fp32):
    # fp32 scores cannot order them even after the translation; the rows are certified uncertain and searched
    # again in float64.
    g = torch.Generator().manual_seed(3)
    a = torch.randn(400, d, generator=g)
    b = a + 0.3 * torch.randn(400, d, generator=g)  # pairs of close codes, each pair far from the others
    sign = torch.where(torch.rand(400, 1, generator=g) < 0.5, 1.0, -1.0)
    x, c = (a + b) / 2 + sign * 2e-8 * (a - b), torch.cat([a, b])
    dist = exact_distances(x, c)
    top2 = dist.topk(2, dim=1, largest=False).values
    assert ((top2[:, 1] - top2[:, 0]) / top2[:, 0]).max() < 1e-5  # every row is such a near tie
    assert wrong(dist, ((c * c).sum(1) - 2 * x @ c.T).argmin(1)) > 20  # which fp32 scores get wrong
    torch.set_num_threads(2)
    idx, _ = nearest(x, c)
    assert torch.equal(idx, dist.argmin(dim=1))


@pytest.mark.parametrize(("d", "offset"), [(8, 1000.0), (8, 0.0), (128, 1000.0)])
def test_triton_kernel_far_from_the_origin(d: int, offset: float) -> None:
    # Interpreted: small shapes. 192 queries of the table's kind plus 64 near ties, 256 codes in four K tiles.
    x, c = offset_data(192, 256, d, offset)
    xt, ct = near_ties(64, d, offset, 1e-4, seed=1)
    x, c = torch.cat([x, xt]), torch.cat([c[:128], ct])
    dist = exact_distances(x, c)
    if offset:
        assert wrong(dist, ((c * c).sum(1) - 2 * x @ c.T).argmin(1)) > 10
    idx, got = nearest_triton(x, c, block_n=64, block_k=64, block_d=64 if d > 64 else 16)
    assert wrong(dist, idx, rel=1e-6) == 0
    torch.testing.assert_close(got.double(), dist.gather(1, idx[:, None]).squeeze(1), rtol=1e-5, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("d", "offset", "anchor_wrong"), [(8, 30, 5), (8, 100, 50), (8, 300, 500),
                                                          (8, 1000, 4000), (128, 1000, 200)])
def test_the_issue_table_at_full_size(d: int, offset: float, anchor_wrong: int) -> None:
    x, c = offset_data(20000, 2048, d, offset)
    dist = torch.cat([exact_distances(x[i : i + 2000], c) for i in range(0, 20000, 2000)])
    assert wrong(dist, torch.cdist(x, c).argmin(1)) >= anchor_wrong
    torch.set_num_threads(2)
    idx, _ = nearest(x, c)
    assert torch.equal(idx, dist.argmin(dim=1))


@pytest.mark.slow
@pytest.mark.parametrize("d", [8, 128])
def test_triton_kernel_on_the_issue_table(d: int) -> None:
    x, c = offset_data(1024, 2048, d, 1000.0)
    dist = exact_distances(x, c)
    idx, _ = nearest_triton(x, c, block_n=64, block_k=128, block_d=64 if d > 64 else 16)
    assert wrong(dist, idx, rel=1e-6) == 0
