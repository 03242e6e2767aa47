"""FSQ and residual FSQ: grid bijection, exact indices under bf16, residual refinement."""

from __future__ import annotations

import math

import pytest
import torch

from voxtok.quantizers import FiniteScalarQuantizer, ResidualFSQ


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [2, 3], [4, 4, 4, 4], [7]])
def test_index_code_bijection_over_the_whole_grid(levels: list[int]) -> None:
    fsq = FiniteScalarQuantizer(len(levels), levels)
    n = math.prod(levels)
    assert fsq.codebook_size == n
    idx = torch.arange(n)
    codes = fsq.index_to_code(idx)
    assert codes.shape == (n, len(levels))
    assert codes.unique(dim=0).shape[0] == n  # injective
    assert codes.abs().max() <= 1.0
    assert torch.equal(fsq.code_to_index(codes), idx)  # and inverse


def test_every_code_is_reachable_by_encode() -> None:
    fsq = FiniteScalarQuantizer(4, [8, 5, 5, 5]).eval()
    z = torch.randn(1, 4, 200_000) * 2
    assert fsq.encode(z).unique().numel() == 1000


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [8, 8, 8, 6, 5]])
def test_bf16_input_gives_the_indices_of_its_fp32_values(levels: list[int]) -> None:
    """vector-quantize-pytorch #114: computing the grid in bf16 loses codes. Same values -> same indices."""
    fsq = FiniteScalarQuantizer(len(levels), levels).eval()
    z16 = (torch.randn(4, len(levels), 4096) * 1.5).to(torch.bfloat16)
    z32 = z16.float()
    ref = fsq.encode(z32)
    assert torch.equal(fsq.encode(z16), ref)
    assert torch.equal(fsq(z16).codes, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fsq.encode(z32), ref)
        assert torch.equal(fsq.encode(z16), ref)
        out = fsq(z32)
    assert torch.equal(out.codes, ref) and out.z_q.dtype == torch.float32
    # a bf16 grid could not even tell these codes apart: many more than bf16's 256 per octave
    assert ref.unique().numel() > 0.5 * math.prod(levels)


def test_projection_when_dim_differs_and_grouped_codebooks() -> None:
    fsq = FiniteScalarQuantizer(16, [4, 4, 4], num_codebooks=2)
    assert fsq.code_dim == 6 and fsq.num_codebooks == 2
    z = torch.randn(2, 16, 8, requires_grad=True)
    out = fsq.train()(z)
    assert out.codes.shape == (2, 2, 8) and out.z_q.shape == z.shape
    out.z_q.sum().backward()
    assert fsq.project_in.weight.grad.abs().sum() > 0


def test_residual_fsq_mse_falls_with_every_stage() -> None:
    rfsq = ResidualFSQ(3, [5, 5, 5], 4).eval()
    z = torch.rand(2, 3, 512) * 1.6 - 0.8
    errors = [float((rfsq.decode(rfsq.encode(z, n_q=n)) - z).pow(2).mean()) for n in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.01 * errors[0]
    assert torch.equal(rfsq.encode(z, n_q=2), rfsq.encode(z)[:, :2])
