"""The Triton kernel, interpreted on CPU tensors (TRITON_INTERPRET=1, set by tests/conftest.py), against the float64
brute force and the torch reference. Interpreted shapes stay tiny: the interpreter is ~100x slower than torch."""

from __future__ import annotations

import pytest
import torch
from nearest_oracle import assert_nearest, brute_distances, integer_data

from voxtok.kernels import nearest
from voxtok.kernels.reference import nearest_reference
from voxtok.kernels.triton_nearest import nearest_triton

SMALL = {"block_n": 16, "block_k": 16, "block_d": 16}

# (N, K, D): none a multiple of the 16-wide blocks except one control; D=1, K=1; D > block_d runs the D loop.
SHAPES = [(16, 16, 16), (37, 50, 5), (9, 45, 1), (20, 1, 7), (1, 33, 3), (23, 40, 37)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("recheck", [False, True])
def test_matches_brute_force_and_reference(shape: tuple[int, int, int], recheck: bool) -> None:
    n, k, d = shape
    x, c = torch.randn(n, d), torch.randn(k, d)
    idx, dist = nearest_triton(x, c, recheck=recheck, **SMALL)
    assert_nearest(x, c, idx, dist)
    ref_idx, ref_dist = nearest_reference(x, c)
    # Random data has no near-ties at these sizes: both implementations pick the same code.
    torch.testing.assert_close(idx, ref_idx)
    torch.testing.assert_close(dist, ref_dist, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("recheck", [False, True])
def test_ties_go_to_the_lowest_index(recheck: bool) -> None:
    x, c = integer_data(30, 20, 3)
    c = torch.cat([c, c, c])  # 60 codes over four 16-wide tiles, duplicates in later tiles and inside tiles
    idx, dist = nearest_triton(x, c, recheck=recheck, **SMALL)
    d = brute_distances(x, c)
    torch.testing.assert_close(idx, d.argmin(dim=1))
    torch.testing.assert_close(idx, nearest_reference(x, c)[0])
    torch.testing.assert_close(dist.double(), d.min(dim=1).values)


def test_padded_codes_never_win() -> None:
    # Every real code is far away; a zero (padding) code would be the nearest if padding could win.
    x = torch.zeros(5, 3)
    c = torch.full((17, 3), 100.0) + torch.arange(17.0)[:, None]
    idx, dist = nearest_triton(x, c, **SMALL)
    assert idx.tolist() == [0] * 5
    torch.testing.assert_close(dist, torch.full((5,), 3e4))


def test_cosine() -> None:
    x, c = torch.randn(21, 6) * 4, torch.randn(40, 6) * torch.rand(40, 1) * 3
    idx, dist = nearest_triton(x, c, "cosine", **SMALL)
    assert_nearest(x, c, idx, dist, "cosine")
    torch.testing.assert_close(idx, nearest_reference(x, c, "cosine")[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype: torch.dtype) -> None:
    # Exact distances of the rounded inputs are the ground truth; the kernel accumulates in fp32 and re-checks
    # the best two candidates, so the chosen code is within 1e-5 (relative) of the best.
    x, c = torch.randn(40, 20).to(dtype), torch.randn(50, 20).to(dtype)
    idx, dist = nearest_triton(x, c, **SMALL)
    assert_nearest(x, c, idx, dist)


def test_recheck_repairs_a_near_tie() -> None:
    # Two codes whose ||c||^2 - 2 x.c differ by less than fp32 resolves at this magnitude: the cancellation-prone
    # score prefers code 0 (or ties), but code 1 is strictly nearer, and the exact re-check must find it.
    x = torch.tensor([[1000.0, 1000.0]])
    c = torch.tensor([[1000.0, 1000.0 + 2**-4], [1000.0, 1000.0 + 2**-5]])
    idx, dist = nearest_triton(x, c, recheck=True, **SMALL)
    assert idx.item() == 1
    torch.testing.assert_close(dist, torch.tensor([2.0**-10]))


def test_codebook_sqnorm_is_used() -> None:
    x, c = torch.randn(10, 4), torch.randn(20, 4)
    sq = (c * c).sum(1)
    idx = nearest_triton(x, c, codebook_sqnorm=sq, **SMALL)[0]
    torch.testing.assert_close(idx, nearest_reference(x, c)[0])
    sq[idx[0]] += 1e6
    assert nearest_triton(x[:1], c, codebook_sqnorm=sq, **SMALL)[0].item() != idx[0].item()


def test_block_sizes_must_be_powers_of_two() -> None:
    with pytest.raises(ValueError, match="block_k must be a power of two; got 24"):
        nearest_triton(torch.randn(4, 3), torch.randn(5, 3), block_k=24)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3000, 1000, 8), (2000, 4100, 64), (1000, 700, 300)])
def test_gpu_dispatch_matches_the_reference(dtype: torch.dtype, shape: tuple[int, int, int]) -> None:
    n, k, d = shape
    x, c = torch.randn(n, d).to(dtype), torch.randn(k, d).to(dtype)
    idx, dist = nearest(x.cuda(), c.cuda())
    ref_idx, _ = nearest_reference(x, c)
    # Accept a different index only if its exact distance is within 1e-4 (relative) of the reference's.
    chosen = ((x.double() - c[idx.cpu()].double()) ** 2).sum(1)
    best = ((x.double() - c[ref_idx].double()) ** 2).sum(1)
    assert torch.all(chosen <= best + 1e-4 * (1 + best)), (chosen - best).max()
    torch.testing.assert_close(dist.cpu().double(), chosen, rtol=1e-4, atol=1e-4)
