"""Code statistics (nominal and entropy bitrate, usage, perplexity) and confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from voxtok.eval import metrics as M


def test_code_statistics_on_known_distributions():
    uniform = torch.arange(64).remainder(16).reshape(1, 64)  # codebook 0: every code 4 times
    constant = torch.full((1, 64), 3)  # codebook 1: one code
    codes = [torch.cat([uniform, constant])[:, :40], torch.cat([uniform, constant])[:, 40:]]  # two utterances
    s = M.code_statistics(codes, [16, 32], frame_rate=50.0)
    assert s["frames"] == 64
    assert s["bitrate_nominal"] == pytest.approx(50 * (4 + 5) / 1000)
    assert s["bitrate_entropy"] == pytest.approx(50 * 4 / 1000)  # 4 bits + 0 bits per frame
    a, b = s["per_codebook"]
    assert (a["used"], a["usage"], a["perplexity"]) == (16, 1.0, pytest.approx(16.0))
    assert (b["used"], b["usage"], b["perplexity"], b["entropy_bits"]) == (1, 1 / 32, 1.0, 0.0)
    assert b["counts"][3] == 64 and sum(b["counts"]) == 64 and len(b["counts"]) == 32
    assert s["codebook_perplexity"] == pytest.approx((16 + 1) / 2)
    skewed = M.code_statistics([torch.tensor([[0, 0, 0, 1]])], [4], 10.0)["per_codebook"][0]
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert skewed["entropy_bits"] == pytest.approx(h) and skewed["perplexity"] == pytest.approx(2**h)


def test_code_statistics_refuses_bad_codes():
    with pytest.raises(ValueError, match=r"codes must be in \[0, 16\); got 16 in codebook 0"):
        M.code_statistics([torch.tensor([[1, 16]])], [16], 50.0)
    with pytest.raises(ValueError, match="Q = 2"):
        M.code_statistics([torch.zeros(1, 5, dtype=torch.long)], [16, 16], 50.0)
    with pytest.raises(ValueError, match="at least one frame"):
        M.code_statistics([torch.zeros(1, 0, dtype=torch.long)], [16], 50.0)


def test_mean_ci_is_student_t():
    mean, half = M.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    # t_{0.975, 3} = 3.182446; s = 1.290994
    assert half == pytest.approx(3.182446 * 1.290994 / 2, rel=1e-5)
    assert M.mean_ci([7.0]) == (7.0, None)
    wide, narrow = M.mean_ci(np.r_[0.0, 1.0] * 10)[1], M.mean_ci(np.tile([0.0, 1.0], 50) * 10)[1]
    assert narrow < wide
    with pytest.raises(ValueError, match="at least one"):
        M.mean_ci([])
