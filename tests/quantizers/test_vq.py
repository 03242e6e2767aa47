"""VectorQuantizer: gradients, precision, balancing (k-means init, EMA, dead-code restart) and masks."""

from __future__ import annotations

import pytest
import torch

from voxtok.quantizers import VectorQuantizer
from voxtok.quantizers.vq import rotate_to


def test_straight_through_passes_the_gradient_unchanged() -> None:
    vq = VectorQuantizer(4, 8, commitment_weight=0.0).train()
    z = torch.randn(2, 4, 7, requires_grad=True)
    g = torch.randn(2, 4, 7)
    out = vq(z)
    (out.z_q * g).sum().backward()
    torch.testing.assert_close(z.grad, g)  # d z_q / d z = identity
    assert not torch.equal(out.z_q.detach(), z.detach())  # and the value is quantized


def test_commitment_loss_pulls_the_encoder_towards_its_code() -> None:
    vq = VectorQuantizer(4, 8).train()
    z = torch.randn(2, 4, 7, requires_grad=True)
    vq(z)  # k-means init, then the codebook moves
    vq.eval()
    out = vq(z)
    out.loss.backward()
    expected = 2 * vq.commitment_weight * (z - out.z_q).detach() / z.numel()
    torch.testing.assert_close(z.grad, expected)


def test_rotation_trick_gradient_is_finite_and_differs_from_straight_through() -> None:
    torch.manual_seed(1)
    z = torch.randn(2, 4, 9)
    g = torch.randn(2, 4, 9)
    grads = {}
    for rotation in (False, True):
        torch.manual_seed(2)
        vq = VectorQuantizer(4, 8, rotation_trick=rotation, commitment_weight=0.0).train()
        vq(z)  # k-means init
        codebook = vq.codebook.clone()  # the codes this step quantizes to (the EMA moves them after)
        zz = z.clone().requires_grad_()
        out = vq(zz)
        (out.z_q * g).sum().backward()
        grads[rotation] = zz.grad
        # forward value is still the code
        torch.testing.assert_close(out.z_q.detach(), codebook[out.codes[:, 0]].transpose(1, 2), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(grads[True]).all()
    assert not torch.allclose(grads[True], grads[False])


def test_rotate_to_maps_e_onto_q_and_preserves_angles() -> None:
    e = torch.randn(32, 5, requires_grad=True)
    q = torch.randn(32, 5)
    out = rotate_to(e, q)
    torch.testing.assert_close(out.detach(), q, rtol=1e-5, atol=1e-5)
    # the backward map is |q|/|e| times a rotation: it scales gradient norms by |q|/|e| exactly
    g = torch.randn(32, 5)
    (grad,) = torch.autograd.grad(out, e, g)
    ratio = grad.norm(dim=-1) / g.norm(dim=-1)
    torch.testing.assert_close(ratio, q.norm(dim=-1) / e.detach().norm(dim=-1), rtol=1e-4, atol=1e-5)


def test_learned_codebook_gradient_is_a_scatter_add_over_used_codes() -> None:
    vq = VectorQuantizer(3, 16, ema_decay=None, kmeans_init=False, dead_code_threshold=0.0).train()
    z = torch.randn(2, 3, 5)
    out = vq(z)
    out.loss.backward()
    grad = vq.codebook.grad
    idx = out.codes.flatten()
    unused = torch.ones(16, dtype=torch.bool)
    unused[idx] = False
    assert unused.any() and torch.equal(grad[unused], torch.zeros_like(grad[unused]))
    frames = z.transpose(1, 2).reshape(-1, 3)
    # d/dc of codebook_weight * mean |c_idx - e|^2 summed per code
    expected = torch.zeros(16, 3).index_add_(0, idx, 2 * (vq.codebook.detach()[idx] - frames) / frames.numel())
    torch.testing.assert_close(grad, vq.codebook_weight * expected)


def test_quantization_runs_in_fp32_under_bf16_autocast() -> None:
    vq = VectorQuantizer(8, 32, codebook_dim=4).train()
    vq(torch.randn(4, 8, 16))
    vq.eval()
    z = torch.randn(2, 8, 16)
    ref = vq(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
        codes = vq.encode(z)
    assert out.z_q.dtype == torch.float32
    assert torch.equal(out.codes, ref.codes) and torch.equal(codes, ref.codes)
    assert torch.equal(out.z_q, ref.z_q)


def _far_codebook(vq: VectorQuantizer, offset: float) -> None:
    """All codes far from the data (a cluster at +offset): what makes a naive VQ collapse."""
    with torch.no_grad():
        cb = offset + 0.1 * torch.randn_like(vq.codebook)
        vq.codebook.copy_(cb)
        vq.ema_sum.copy_(cb)
        vq.ema_count.fill_(1.0)


def _usage_after_training(threshold: float, steps: int = 300) -> float:
    # Data around +6, codes around -6: neither near the origin, where Laplace-smoothed EMA pulls unused codes.
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 32, kmeans_init=False, dead_code_threshold=threshold).train()
    _far_codebook(vq, -6.0)
    for _ in range(steps):
        vq(torch.randn(4, 4, 128) + 6.0)
    vq.eval()
    return float(vq(torch.randn(8, 4, 512) + 6.0).metrics["usage"][0])


def test_dead_code_restart_rescues_a_codebook_a_naive_vq_collapses() -> None:
    naive = _usage_after_training(threshold=0.0)
    balanced = _usage_after_training(threshold=2.0)
    assert naive < 0.2  # only the few codes nearest the data ever win
    assert balanced >= 0.95


def test_kmeans_init_uses_every_code_from_the_first_step() -> None:
    vq = VectorQuantizer(4, 32).train()
    out = vq(torch.randn(4, 4, 256))
    assert bool(vq.initialized)
    assert float(out.metrics["usage"][0]) >= 0.95
    assert float(out.metrics["dead_codes"][0]) == 0.0


def test_dead_code_metric_counts_codes_under_the_threshold() -> None:
    vq = VectorQuantizer(4, 16, dead_code_threshold=2.0).eval()
    with torch.no_grad():
        vq.ema_count.copy_(torch.tensor([0.0, 0.5, 1.99, 2.0, 2.01, 5.0, 0.1, 3.0] * 2))
    out = vq(torch.randn(1, 4, 10))  # eval: no balancing step moves the counts
    assert float(out.metrics["dead_codes"][0]) == 8.0  # 0, 0.5, 1.99, 0.1 in each half


def test_padding_reaches_no_balancing_statistic() -> None:
    """Padded frames sit at 1e3: k-means init, EMA sums/counts and dead-code restarts must never see them."""
    z = torch.randn(3, 4, 40)
    mask = torch.rand(3, 40) < 0.6
    padded = torch.where(mask[:, None, :], z, torch.full_like(z, 1e3))
    torch.manual_seed(5)
    vq = VectorQuantizer(4, 16, dead_code_threshold=3.0).train()
    for _ in range(5):
        out = vq(padded, mask)
    assert vq.codebook.abs().max() < 50  # no code was initialised or restarted at a padded frame
    # every code under the threshold was restarted (at the threshold), so none is dead after the step
    assert float(out.metrics["dead_codes"][0]) == 0.0 and bool((vq.ema_count >= 3.0).all())
    # EMA counts sum to the valid frames per step, not the padded ones
    torch.testing.assert_close(vq.ema_count.sum(), mask.sum().float(), rtol=0.05, atol=0.5)

    # and the EMA state equals that of the same valid frames given without padding
    valid = z.transpose(1, 2)[mask].t()[None]  # [1, 4, N_valid]
    torch.manual_seed(6)
    a = VectorQuantizer(4, 16, dead_code_threshold=0.0).train()
    for _ in range(3):
        out_a = a(padded, mask)
    torch.manual_seed(6)
    b = VectorQuantizer(4, 16, dead_code_threshold=0.0).train()
    for _ in range(3):
        out_b = b(valid)
    torch.testing.assert_close(a.ema_count, b.ema_count)
    torch.testing.assert_close(a.ema_sum, b.ema_sum)
    torch.testing.assert_close(a.codebook, b.codebook)
    torch.testing.assert_close(out_a.loss, out_b.loss)
    torch.testing.assert_close(out_a.metrics["perplexity"], out_b.metrics["perplexity"])


def test_all_padding_batch_leaves_state_untouched() -> None:
    vq = VectorQuantizer(4, 8).train()
    vq(torch.randn(2, 4, 32))
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    out = vq(torch.randn(2, 4, 5), torch.zeros(2, 5, dtype=torch.bool))
    assert float(out.loss) == 0.0
    assert float(out.metrics["usage"][0]) == 0.0
    for k, v in vq.state_dict().items():
        assert torch.equal(v, state[k]), k  # not even a decay


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_codes_are_the_nearest_codebook_rows(metric: str) -> None:
    vq = VectorQuantizer(5, 12, metric=metric).train()
    vq(torch.randn(2, 5, 64))
    vq.eval()
    z = torch.randn(2, 5, 9)
    codes = vq.encode(z)[:, 0]
    frames = z.transpose(1, 2)
    cb = vq.codebook_vectors()
    if metric == "cosine":
        frames = torch.nn.functional.normalize(frames, dim=-1)
        expected = (frames @ cb.t()).argmax(-1)
    else:
        expected = torch.cdist(frames, cb[None].expand(2, -1, -1)).argmin(-1)
    assert torch.equal(codes, expected)
    if metric == "cosine":
        torch.testing.assert_close(cb.norm(dim=-1), torch.ones(12))
