"""``VectorQuantizer`` reports how many codes its dead-code rule restarted in a training step (codebook health)."""

from __future__ import annotations

import torch

from voxtok.quantizers import ResidualVectorQuantizer, VectorQuantizer


def test_restarts_count_the_codes_replaced() -> None:
    vq = VectorQuantizer(4, 32, kmeans_init=False, dead_code_threshold=2.0).train()
    before = vq.codebook.clone()
    out = vq(torch.randn(1, 4, 8))  # 8 frames, 32 codes: most counts decay under the threshold
    changed = int((vq.codebook != before).any(-1).sum())
    assert out.metrics["restarts"].shape == (1,)
    assert int(out.metrics["restarts"]) > 0
    # restarted codes plus the ones the EMA moved; the restarted ones were dead before the step
    assert int(out.metrics["restarts"]) <= changed
    vq.eval()
    assert int(vq(torch.randn(1, 4, 8)).metrics["restarts"]) == 0  # evaluation never restarts


def test_no_restarts_without_the_rule() -> None:
    vq = VectorQuantizer(4, 32, kmeans_init=False, dead_code_threshold=0.0).train()
    assert int(vq(torch.randn(1, 4, 8)).metrics["restarts"]) == 0


def test_residual_quantizer_reports_one_count_per_stage() -> None:
    rvq = ResidualVectorQuantizer(4, 3, 16, kmeans_init=False).train()
    assert rvq(torch.randn(2, 4, 5)).metrics["restarts"].shape == (3,)
