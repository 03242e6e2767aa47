"""Fixtures for the converter tests: real speech at any rate, cut to whole frames."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from voxtok import audio as A


@pytest.fixture(scope="session")
def speech(data_dir) -> Callable[[int, int, int], torch.Tensor]:
    """``speech(sample_rate, batch, samples)`` -> ``[batch, 1, samples]``: real recordings (structure over time,
    so random encoders still give latents that vary), one different excerpt per item."""
    x, sr = A.read(data_dir / "2412-153948-0001.flac")
    cache: dict[int, torch.Tensor] = {}

    def get(sample_rate: int, batch: int, samples: int) -> torch.Tensor:
        if sample_rate not in cache:
            cache[sample_rate] = A.to_mono(A.promote(A.resample(x, sr, sample_rate)))[0, 0]
        y = cache[sample_rate]
        starts = [sample_rate // 2 + i * samples // 2 for i in range(batch)]
        return torch.stack([y[s : s + samples] for s in starts])[:, None, :].float().contiguous()

    return get
