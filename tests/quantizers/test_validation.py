"""Bad input raises ValueError naming the bad value and what was expected."""

from __future__ import annotations

import pytest
import torch

from voxtok.quantizers import (
    FiniteScalarQuantizer,
    IdentityQuantizer,
    ResidualFSQ,
    ResidualVectorQuantizer,
    SplitResidualVectorQuantizer,
    VectorQuantizer,
)

ALL = [
    lambda: VectorQuantizer(4, 8),
    lambda: ResidualVectorQuantizer(4, 2, 8),
    lambda: SplitResidualVectorQuantizer(4, 3, 8),
    lambda: FiniteScalarQuantizer(4, [5, 5]),
    lambda: ResidualFSQ(4, [5, 5], 2),
    lambda: IdentityQuantizer(4),
]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize(
    ("z", "match"),
    [
        (torch.randn(4, 7), r"rank 2"),
        (torch.randn(2, 5, 7), r"D = 4 .*\(2, 5, 7\)"),
        (torch.randint(0, 3, (2, 4, 7)), r"floating"),
    ],
)
def test_latents_of_wrong_rank_dim_or_dtype(make, z: torch.Tensor, match: str) -> None:
    q = make()
    for call in (q, q.encode):
        with pytest.raises(ValueError, match=match):
            call(z)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_latents(make, bad: float) -> None:
    z = torch.randn(2, 4, 7)
    z[1, 2, 5] = bad
    q = make()
    with pytest.raises(ValueError, match=rf"finite; got {bad}.*batch 1, feature 2, frame 5"):
        q(z)
    with pytest.raises(ValueError, match="finite"):
        q.encode(z)


@pytest.mark.parametrize(
    ("make", "codes", "match"),
    [
        (ALL[0], torch.full((1, 1, 3), 8), r"\[0, 8\) in codebook 0; got 8"),
        (ALL[0], torch.full((1, 1, 3), -1), r"\[0, 8\) in codebook 0; got -1"),
        (ALL[1], torch.tensor([[[0, 1], [3, 9]]]), r"\[0, 8\) in codebook 1; got 9"),
        (ALL[3], torch.full((1, 1, 3), 25), r"\[0, 25\) in codebook 0; got 25"),
        (ALL[0], torch.zeros(1, 1, 3), r"integer codes .*float32"),
        (ALL[1], torch.zeros(1, 3, 3, dtype=torch.long), r"1 to 2 codebooks .* got 3"),
        (ALL[0], torch.zeros(1, 3, dtype=torch.long), r"\[B, Q, T\]; got rank 2"),
        (ALL[3], torch.zeros(1, 0, 3, dtype=torch.long), r"1 to 1 codebooks"),
    ],
)
def test_bad_codes(make, codes: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make().decode(codes)


def test_non_residual_quantizers_take_all_their_codebooks() -> None:
    fsq = FiniteScalarQuantizer(8, [4, 4], num_codebooks=2)
    with pytest.raises(ValueError, match="all 2 codebooks; got 1"):
        fsq.decode(torch.zeros(1, 1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_q must be None or 2"):
        fsq.encode(torch.randn(1, 8, 3), n_q=1)


@pytest.mark.parametrize("make", [ALL[1], ALL[2], ALL[4]])
@pytest.mark.parametrize("n_q", [0, 4, -1, 1.5])
def test_n_q_outside_the_stages(make, n_q) -> None:
    q = make()
    with pytest.raises(ValueError, match=rf"n_q must be an int in \[1, {q.num_codebooks}\].*got {n_q}"):
        q.encode(torch.randn(1, 4, 3), n_q=n_q)


@pytest.mark.parametrize("levels", [[8, 1, 5], [0], [], [3, 2.5], [True, 3]])
@pytest.mark.parametrize("cls", [FiniteScalarQuantizer, ResidualFSQ])
def test_fsq_levels_below_two(cls, levels) -> None:
    args = (4, levels) if cls is FiniteScalarQuantizer else (4, levels, 2)
    with pytest.raises(ValueError, match="levels"):
        cls(*args)


def test_bad_mask_and_constructor_arguments() -> None:
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match=r"mask must be \[B, T\] = \[2, 7\]"):
        vq(torch.randn(2, 4, 7), torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="metric"):
        VectorQuantizer(4, 8, metric="dot")
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(4, 8, ema_decay=1.0)
    with pytest.raises(ValueError, match="codebook_size"):
        VectorQuantizer(4, 0)
    with pytest.raises(ValueError, match=r"one size per stage \(3\)"):
        ResidualVectorQuantizer(4, 3, [8, 8])
    with pytest.raises(ValueError, match="num_quantizers must be an int > num_semantic"):
        SplitResidualVectorQuantizer(4, 1, 8)


def test_inputs_are_checked_once_per_call_not_once_per_stage(monkeypatch) -> None:
    """The quantizer checks its input at its public entry; its stages (and k-means) search without re-scanning."""
    from voxtok.kernels import dispatch
    from voxtok.quantizers import base

    scans: list[str] = []
    real_finite, real_codes = dispatch._check_finite, base.check_codes
    monkeypatch.setattr(dispatch, "_check_finite", lambda name, t: scans.append(name) or real_finite(name, t))
    monkeypatch.setattr(base, "check_codes", lambda *a: scans.append("codes") or real_codes(*a))
    q = ResidualVectorQuantizer(4, 5, 8).train()
    q(torch.randn(2, 4, 40))  # k-means init and EMA on every stage
    q.eval()
    codes = q.encode(torch.randn(2, 4, 9))
    q.decode(codes)
    assert scans == ["codes"]  # decode's one range check; nearest was never asked to scan again
    with pytest.raises(ValueError, match="must be finite"):
        q.encode(torch.full((1, 4, 3), float("nan")))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 8\) in codebook 4; got 8"):
        q.decode(torch.cat([codes, torch.full((2, 1, 9), 8)], 1)[:, 1:])


def test_a_codec_leaves_the_range_check_to_its_quantizer(monkeypatch) -> None:
    from voxtok.codecs import build
    from voxtok.quantizers import base

    calls: list[int] = []
    real = base.check_codes
    monkeypatch.setattr(base, "check_codes", lambda *a: calls.append(1) or real(*a))
    codec = build("encodec-24khz-tiny").eval()
    tokens = codec.encode(torch.randn(1, 1, 300) * 0.1)
    codec.decode(tokens)
    assert len(calls) == 1
    with pytest.raises(ValueError, match=r"codes must be in \[0, 16\) in codebook 2; got 16"):
        codec.decode(torch.where(torch.arange(4)[None, :, None] == 2, 16, tokens.codes))
