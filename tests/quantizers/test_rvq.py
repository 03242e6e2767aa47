"""Residual VQ and Mimi's split RVQ: stages refine, prefixes decode, dropout trains prefixes."""

from __future__ import annotations

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
    out = rvq(torch.randn(2, 4, 32))
    for key in ("perplexity", "usage", "dead_codes", "stage_loss"):
        assert out.metrics[key].shape == (3,), key
    torch.testing.assert_close(out.loss, out.metrics["stage_loss"].sum())


def test_gradient_passes_straight_through_the_whole_stack() -> None:
    rvq = ResidualVectorQuantizer(4, 3, 8, commitment_weight=0.0).train()
    rvq(torch.randn(2, 4, 32))
    z = torch.randn(2, 4, 16, requires_grad=True)
    g = torch.randn(2, 4, 16)
    (rvq(z).z_q * g).sum().backward()
    torch.testing.assert_close(z.grad, g)


def test_quantizer_dropout_trains_only_a_prefix_per_item() -> None:
    torch.manual_seed(3)
    rvq = ResidualVectorQuantizer(4, 4, 8, quantizer_dropout=1.0).train()
    rvq(torch.randn(16, 4, 32))
    counts_before = [stage.ema_count.clone() for stage in rvq.stages]
    rvq(torch.randn(16, 4, 32))
    # with dropout on every item, later stages see fewer items: their EMA counts grow less
    gained = [float((s.ema_count - s.ema_decay * c).sum()) for s, c in zip(rvq.stages, counts_before, strict=True)]
    assert gained[0] > gained[-1]
    assert all(g >= 0 for g in gained)


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
