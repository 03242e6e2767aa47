"""Residual VQ and Mimi's split RVQ: stages refine, prefixes decode, dropout trains prefixes."""

from __future__ import annotations

import pytest
import torch

from voxtok.quantizers import ResidualVectorQuantizer, SplitResidualVectorQuantizer


def _fit(q, steps: int = 30, dim: int = 4) -> None:
    q.train()
    for _ in range(steps):
        q(torch.randn(8, dim, 64))
    q.eval()


def test_mse_falls_with_every_added_stage() -> None:
    rvq = ResidualVectorQuantizer(4, 4, 16)
    _fit(rvq)
    z = torch.randn(4, 4, 256)
    errors = [float((rvq.decode(rvq.encode(z, n_q=n)) - z).pow(2).mean()) for n in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0]


def test_every_prefix_decodes_and_matches_the_full_codes() -> None:
    rvq = ResidualVectorQuantizer(4, 3, [16, 8, 4], codebook_dim=2)
    _fit(rvq)
    z = torch.randn(2, 4, 10)
    full = rvq.encode(z)
    assert rvq.codebook_sizes == [16, 8, 4] and rvq.codebook_size == 16
    for n in range(1, 4):
        prefix = rvq.encode(z, n_q=n)
        assert torch.equal(prefix, full[:, :n])  # stage i only depends on stages < i
        assert rvq.decode(prefix).shape == z.shape
    # decoding a prefix equals the sum of its stages' decodes
    manual = sum(stage.decode(full[:, i : i + 1]) for i, stage in enumerate(rvq.stages))
    torch.testing.assert_close(rvq.decode(full), manual)


def test_forward_reports_per_stage_losses_and_usage() -> None:
    rvq = ResidualVectorQuantizer(4, 3, 8).train()
    rvq(torch.randn(2, 4, 32))  # k-means init happens on this first call
    codebooks = [stage.codebook.clone() for stage in rvq.stages]  # the codes the next step searches
    z = torch.randn(2, 4, 32)
    out = rvq(z)
    for key in ("perplexity", "usage", "dead_codes", "stage_loss"):
        assert out.metrics[key].shape == (3,), key
    # Recompute each stage from the codebooks before the step: nearest codes of the residual, then the
    # commitment loss of that stage and the residual left for the next.
    residual = z.permute(0, 2, 1).reshape(-1, 4)
    expected = []
    for i, (stage, cb) in enumerate(zip(rvq.stages, codebooks, strict=True)):
        idx = torch.cdist(residual.double(), cb.double()).argmin(1)
        assert torch.equal(out.codes[:, i].reshape(-1), idx), i
        expected.append(stage.commitment_weight * (residual - cb[idx]).pow(2).mean())
        residual = residual - cb[idx]
    torch.testing.assert_close(out.metrics["stage_loss"], torch.stack(expected))
    torch.testing.assert_close(out.loss, torch.stack(expected).sum())
    assert out.metrics["stage_loss"][0] > out.metrics["stage_loss"][-1]  # each stage quantizes a smaller residual


def test_gradient_passes_straight_through_the_whole_stack() -> None:
    rvq = ResidualVectorQuantizer(4, 3, 8, commitment_weight=0.0).train()
    rvq(torch.randn(2, 4, 32))
    z = torch.randn(2, 4, 16, requires_grad=True)
    g = torch.randn(2, 4, 16)
    (rvq(z).z_q * g).sum().backward()
    torch.testing.assert_close(z.grad, g)


def test_quantizer_dropout_trains_only_a_prefix_per_item() -> None:
    # Dropout on every item: item b keeps a random prefix of 1..4 stages, and stage s learns only from the frames
    # of the items that keep it. The frames each stage saw are read back from its EMA counts (decay d: the
    # counts gain (1 - d) per frame; no dead-code restart to add counts).
    torch.manual_seed(3)
    rvq = ResidualVectorQuantizer(4, 4, 8, quantizer_dropout=1.0, dead_code_threshold=0.0).train()
    rvq(torch.randn(64, 4, 8))
    counts_before = [stage.ema_count.clone() for stage in rvq.stages]
    rvq(torch.randn(64, 4, 8))
    frames = [
        float((s.ema_count - s.ema_decay * c).sum()) / (1 - s.ema_decay)
        for s, c in zip(rvq.stages, counts_before, strict=True)
    ]
    assert frames[0] == pytest.approx(64 * 8, rel=1e-4)  # every item keeps the first stage
    for f in frames:  # whole items: multiples of their 8 frames
        assert abs(f / 8 - round(f / 8)) < 1e-3, frames
    assert all(b <= a + 1e-3 for a, b in zip(frames, frames[1:], strict=False)), frames  # prefixes
    # a quarter of the items keep all 4 stages on average (16 +- 3.5 of 64): half is more than 4 sigma away
    assert frames[-1] <= 0.5 * frames[0], frames
    # without dropout (eval, or p = 0) every stage sees every frame
    plain = ResidualVectorQuantizer(4, 4, 8, dead_code_threshold=0.0).train()
    plain(torch.randn(16, 4, 32))
    before = [stage.ema_count.clone() for stage in plain.stages]
    plain(torch.randn(16, 4, 32))
    for s, c in zip(plain.stages, before, strict=True):
        assert float((s.ema_count - s.ema_decay * c).sum()) / (1 - s.ema_decay) == pytest.approx(512, rel=1e-4)


def test_split_rvq_sums_a_semantic_and_an_acoustic_quantizer() -> None:
    q = SplitResidualVectorQuantizer(4, 4, [16, 8, 8, 8])
    _fit(q)
    z = torch.randn(2, 4, 12)
    codes = q.encode(z)
    assert codes.shape == (2, 4, 12)
    assert torch.equal(codes[:, :1], q.semantic.encode(z))
    assert torch.equal(codes[:, 1:], q.acoustic.encode(z))  # acoustic quantizes z, not the semantic residual
    torch.testing.assert_close(q.decode(codes), q.semantic.decode(codes[:, :1]) + q.acoustic.decode(codes[:, 1:]))
    assert torch.equal(q.decode(codes[:, :1]), q.semantic.decode(codes[:, :1]))
    assert torch.equal(q.encode(z, n_q=2), codes[:, :2])
    sem, ac = q.forward_parts(z)
    assert sem.codes.shape[1] == 1 and ac.codes.shape[1] == 3
