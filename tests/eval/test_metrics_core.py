"""The metric primitives shared by evaluation and training validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxtok.eval import metrics as M


def _speechlike(seconds: float = 2.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    carrier = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (150, 300, 450, 900, 1800))
    return (0.1 * carrier * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def test_identity_scores_and_noise_order() -> None:
    x = _speechlike()
    assert M.stoi(x, x, 16000) == pytest.approx(1.0, abs=1e-6)
    assert M.pesq(x, x, 16000) == pytest.approx(4.64, abs=0.01)
    rng = np.random.default_rng(1)
    noisy = [x + s * rng.standard_normal(x.shape).astype(np.float32) for s in (0.003, 0.03)]
    assert M.stoi(x, noisy[0], 16000) > M.stoi(x, noisy[1], 16000)
    assert M.pesq(x, noisy[0], 16000, "nb") > M.pesq(x, noisy[1], 16000, "nb")


def test_batched_metrics_are_per_item_and_ignore_padding() -> None:
    x = torch.from_numpy(_speechlike())[None, None].repeat(2, 1, 1)
    y = x + 0.01 * torch.randn_like(x)
    lengths = torch.tensor([32000, 20000])
    padded = y.clone()
    padded[1, :, 20000:] = 5.0  # garbage past item 1's length must not count
    for f in (lambda a, b: M.mel_distance(a, b, 16000, lengths), lambda a, b: M.stft_distance(a, b, lengths),
              lambda a, b: M.si_sdr(a, b, lengths)):
        assert torch.allclose(f(x, y), f(x, padded))
    assert M.si_sdr(x, x).min() > 60
    assert (M.mel_distance(x, y, 16000) < M.mel_distance(x, x + 0.1 * torch.randn_like(x), 16000)).all()
    with pytest.raises(ValueError, match="PESQ mode"):
        M.pesq(x[0, 0], x[0, 0], 16000, "xx")
