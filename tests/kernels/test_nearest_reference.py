"""The torch reference (the CPU path of ``voxtok.kernels.nearest``) against a float64 brute force."""

from __future__ import annotations

import pytest
import torch
from nearest_oracle import assert_nearest, brute_distances, integer_data

from voxtok.kernels import nearest
from voxtok.kernels.dispatch import backend
from voxtok.kernels.reference import nearest_reference

# (N, K, D): ragged against every block shape used below, D=1, K=1, K below and above one amin group.
SHAPES = [(1, 1, 1), (7, 1, 3), (33, 5, 1), (50, 63, 4), (129, 130, 8), (64, 300, 17), (200, 1000, 2)]
# None: the default tile; small ones force several N and K blocks, ragged tails and both tile reductions.
BLOCKS = [(None, None), (16, 32), (24, 192)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("blocks", BLOCKS)
def test_matches_brute_force(shape: tuple[int, int, int], blocks: tuple[int | None, int | None]) -> None:
    n, k, d = shape
    x, c = torch.randn(n, d), torch.randn(k, d) * 1.5
    idx, dist = nearest_reference(x, c, block_n=blocks[0], block_k=blocks[1])
    assert_nearest(x, c, idx, dist)


@pytest.mark.parametrize("blocks", BLOCKS)
@pytest.mark.parametrize("shape", [(40, 3, 2), (100, 300, 3), (70, 700, 1)])
def test_ties_go_to_the_lowest_index(shape: tuple[int, int, int], blocks: tuple[int | None, int | None]) -> None:
    # Integer data: many codes sit at exactly the same distance, inside a group, across groups and across K blocks.
    x, c = integer_data(*shape)
    c = torch.cat([c, c])  # duplicate rows: the first copy must win
    idx, dist = nearest_reference(x, c, block_n=blocks[0], block_k=blocks[1])
    d = brute_distances(x, c)
    torch.testing.assert_close(idx, d.argmin(dim=1))  # torch.argmin returns the first minimum
    torch.testing.assert_close(dist.double(), d.min(dim=1).values)
    assert idx.max() < shape[1]


@pytest.mark.parametrize("blocks", BLOCKS)
def test_cosine(blocks: tuple[int | None, int | None]) -> None:
    x, c = torch.randn(90, 6) * 3, torch.randn(200, 6) * torch.rand(200, 1) * 5
    idx, dist = nearest_reference(x, c, "cosine", block_n=blocks[0], block_k=blocks[1])
    assert_nearest(x, c, idx, dist, "cosine")
    cos = torch.nn.functional.cosine_similarity(x.double(), c[idx].double(), dim=1)
    torch.testing.assert_close(dist.double(), 2 - 2 * cos, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes(dtype: torch.dtype) -> None:
    x, c = torch.randn(80, 12).to(dtype), torch.randn(150, 12).to(dtype)
    idx, dist = nearest(x, c)
    assert_nearest(x, c, idx, dist)  # against the exact distances of the (rounded) inputs
    idx, dist = nearest(x.float(), c)  # mixed dtypes
    assert_nearest(x, c, idx, dist)


def test_float64_inputs_are_searched_in_float64() -> None:
    # Two codes 1e-9 apart in distance: fp32 cannot separate them, float64 must.
    x = torch.zeros(1, 2, dtype=torch.float64)
    c = torch.tensor([[1.0 + 1e-9, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert nearest(x, c)[0].item() == 1


def test_codebook_sqnorm_and_layout() -> None:
    x, c = torch.randn(60, 9), torch.randn(130, 9)
    idx, dist = nearest(x, c)
    idx2, dist2 = nearest(x, c, codebook_sqnorm=(c * c).sum(1))
    torch.testing.assert_close(idx2, idx)
    torch.testing.assert_close(dist2, dist)
    xt = torch.randn(9, 60).T  # non-contiguous rows
    assert_nearest(xt, c, *nearest(xt, c))
    # A deliberately wrong sqnorm changes the answer: the argument is used, not recomputed.
    shifted = (c * c).sum(1)
    shifted[idx[0]] += 1e6
    assert nearest(x[:1], c, codebook_sqnorm=shifted)[0].item() != idx[0].item()


def test_codebook_center_and_sqnorm_far_from_the_origin() -> None:
    # Latents at 1000: the default centre, a given centre with its norms, and raw norms (no centre: fp32 scores
    # about the origin, whose uncertified rows are searched again in float64) all give the float64 argmin.
    g = torch.Generator().manual_seed(0)
    c = torch.randn(500, 8, generator=g) + 1000
    x = c[torch.randint(0, 500, (400,), generator=g)] + 0.5 * torch.randn(400, 8, generator=g)
    expected = brute_distances(x, c).argmin(dim=1)
    p = c[3]
    for kwargs in ({}, {"codebook_center": p, "codebook_sqnorm": ((c - p) ** 2).sum(1)},
                   {"codebook_sqnorm": (c.double() ** 2).sum(1).float()}, {"codebook_center": p}):
        idx, dist = nearest(x, c, **kwargs)
        assert torch.equal(idx, expected), kwargs
        assert_nearest(x, c, idx, dist)


def test_empty_x_and_no_grad() -> None:
    c = torch.randn(10, 3, requires_grad=True)
    idx, dist = nearest(torch.empty(0, 3), c)
    assert idx.shape == dist.shape == (0,) and idx.dtype == torch.int64
    x = torch.randn(5, 3, requires_grad=True)
    idx, dist = nearest(x, c)
    assert not dist.requires_grad and dist.grad_fn is None


def test_cpu_tensors_take_the_torch_path_under_the_interpreter() -> None:
    # conftest sets TRITON_INTERPRET=1; dispatch must still ignore it and look at the device only.
    import os

    assert os.environ.get("TRITON_INTERPRET") == "1"
    assert backend(torch.zeros(1, 1)) == "torch"


@pytest.mark.parametrize(
    ("x", "c", "kwargs", "match"),
    [
        (torch.randn(4, 3), torch.randn(5, 2), {}, r"share D.*\(4, 3\).*\(5, 2\)"),
        (torch.randn(4, 3), torch.randn(0, 3), {}, r"codebook is empty"),
        (torch.randint(0, 5, (4, 3)), torch.randn(5, 3), {}, r"x must be a floating tensor; got dtype torch.int64"),
        (torch.randn(4, 3), torch.ones(5, 3, dtype=torch.int32), {}, r"codebook must be a floating"),
        (
            torch.tensor([[0.0, 1.0], [2.0, float("nan")]]),
            torch.randn(5, 2),
            {},
            r"x must be finite; got nan at x\[1, 1\]",
        ),
        (torch.randn(4, 2), torch.tensor([[float("inf"), 0.0]]), {}, r"codebook must be finite; got inf"),
        (torch.randn(4, 3, 1), torch.randn(5, 3), {}, r"x must be a 2-D tensor"),
        (torch.randn(4, 3), torch.randn(5, 3), {"metric": "dot"}, r"metric must be one of.*'dot'"),
        (torch.randn(4, 3), torch.randn(5, 3), {"codebook_sqnorm": torch.ones(4)}, r"codebook_sqnorm must be.*\[5\]"),
        (torch.randn(4, 0), torch.randn(5, 0), {}, r"D must be >= 1"),
        (torch.randn(4, 3), torch.randn(5, 3), {"codebook_center": torch.ones(2)}, r"codebook_center must be.*\[3\]"),
        (
            torch.randn(4, 3),
            torch.randn(5, 3),
            {"codebook_center": torch.tensor([0.0, float("nan"), 0.0])},
            r"codebook_center must be finite",
        ),
    ],
)
def test_bad_input(x: torch.Tensor, c: torch.Tensor, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nearest(x, c, **kwargs)


def test_worker_threads_give_the_same_answer_and_restore_the_setting() -> None:
    x, c = torch.randn(300, 5), torch.randn(200, 5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = nearest_reference(x, c, block_n=16)
        torch.set_num_threads(2)
        threaded = nearest_reference(x, c, block_n=16)  # 19 row blocks shared by two workers
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(threaded, serial, rtol=0, atol=0)
    assert_nearest(x, c, *threaded)
