"""Learning-rate multipliers: warm-up, then constant, cosine, linear or exponential decay, by steps or by time."""

from __future__ import annotations

import math

import pytest

from voxtok.training.schedule import lr_multiplier


def test_warmup_then_cosine_to_the_floor() -> None:
    f = lr_multiplier("cosine", warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 200)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False)) and values[-1] == pytest.approx(0.1)


def test_linear_decay_then_flat() -> None:
    f = lr_multiplier("linear", warmup_steps=0, total_steps=100, min_lr_ratio=0.2)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.6)
    assert f(100) == pytest.approx(0.2) and f(1000) == pytest.approx(0.2)


def test_exponential_like_dac() -> None:
    f = lr_multiplier("exponential", warmup_steps=0, total_steps=None, gamma=0.999996)
    assert f(0) == 1.0 and f(250000) == pytest.approx(0.999996**250000)
    g = lr_multiplier("exponential", warmup_steps=0, total_steps=None, gamma=0.5, min_lr_ratio=0.1)
    assert g(2) == 0.25 and g(10) == 0.1


def test_time_progress_replaces_the_step_count() -> None:
    progress = [0.0]
    f = lr_multiplier("cosine", warmup_steps=0, total_steps=None, progress=lambda: progress[0])
    assert f(123) == 1.0
    progress[0] = 0.5
    assert f(0) == pytest.approx(0.5)
    progress[0] = 1.7  # past the budget: stays at the floor
    assert f(5) == pytest.approx(0.0)


def test_constant_and_errors() -> None:
    assert lr_multiplier("constant", 4, None)(1) == 0.5 and lr_multiplier("constant", 0, None)(10**6) == 1.0
    with pytest.raises(ValueError, match="needs total_steps > warmup_steps"):
        lr_multiplier("cosine", 100, 50)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        lr_multiplier("poly", 0, 10)
    with pytest.raises(ValueError, match="gamma"):
        lr_multiplier("exponential", 0, None, gamma=1.5)
    assert math.isclose(lr_multiplier("cosine", 0, 2)(1), 0.5)
