"""``lookup``: a gather whose gradient reaches the codebook as a scatter-add."""

from __future__ import annotations

import pytest
import torch

from voxtok.kernels import lookup, nearest


def test_values_and_shapes() -> None:
    c = torch.randn(10, 4)
    idx = torch.randint(0, 10, (2, 3, 5))
    out = lookup(idx, c)
    assert out.shape == (2, 3, 5, 4)
    torch.testing.assert_close(out, c[idx], rtol=0, atol=0)
    torch.testing.assert_close(lookup(idx.int(), c), c[idx], rtol=0, atol=0)


def test_gradient_is_a_scatter_add_into_the_codebook() -> None:
    c = torch.randn(6, 3, requires_grad=True)
    idx = torch.tensor([0, 2, 2, 5, 2, 0])  # repeated codes accumulate
    grad = torch.randn(6, 3)
    lookup(idx, c).backward(grad)
    expected = torch.zeros(6, 3).index_add_(0, idx, grad)
    torch.testing.assert_close(c.grad, expected)
    assert c.grad[[1, 3, 4]].abs().sum() == 0  # unused codes get nothing


def test_round_trip_with_nearest() -> None:
    c = torch.randn(50, 8)
    idx, dist = nearest(c[[3, 7, 7, 49]] + 1e-3, c)
    assert idx.tolist() == [3, 7, 7, 49]
    torch.testing.assert_close(dist, ((lookup(idx, c) - (c[idx] + 1e-3)) ** 2).sum(1))


@pytest.mark.parametrize(
    ("idx", "c", "match"),
    [
        (torch.tensor([0, 1.0]), torch.randn(3, 2), "indices must be int64 or int32; got torch.float32"),
        (torch.tensor([0, 3]), torch.randn(3, 2), r"indices must be in \[0, 3\); got 3"),
        (torch.tensor([-1, 0]), torch.randn(3, 2), r"indices must be in \[0, 3\); got -1"),
        (torch.tensor([0]), torch.randn(3), r"codebook must be a \[K, D\] tensor"),
    ],
)
def test_bad_input(idx: torch.Tensor, c: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lookup(idx, c)
