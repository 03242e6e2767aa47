"""EnCodec's gradient-norm balancer and fixed weights."""

from __future__ import annotations

import pytest
import torch

from voxtok.losses import FixedWeights, GradientBalancer


def _losses(out: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {"mse": scale * (out - target).pow(2).mean(), "l1": (out - target).abs().mean()}


def test_balanced_gradient_has_the_weighted_shares() -> None:
    target = torch.randn(3, 1, 64)
    out = torch.randn(3, 1, 64, requires_grad=True)
    bal = GradientBalancer({"mse": 3.0, "l1": 1.0}, total_norm=2.0, ema_decay=0.0, per_batch_item=False)
    bal.backward(_losses(out, target), out)
    g_mse = torch.autograd.grad(_losses(out, target)["mse"], out)[0]
    g_l1 = torch.autograd.grad(_losses(out, target)["l1"], out)[0]
    expected = 0.75 * 2.0 * g_mse / g_mse.norm() + 0.25 * 2.0 * g_l1 / g_l1.norm()
    torch.testing.assert_close(out.grad, expected, rtol=1e-5, atol=1e-7)


def test_balancer_ignores_the_natural_scale_of_a_loss() -> None:
    target = torch.randn(2, 1, 32)
    grads = []
    for scale in (1.0, 1000.0):
        out = target.clone().add_(torch.linspace(-1, 1, 32)).requires_grad_(True)
        GradientBalancer({"mse": 1.0, "l1": 1.0}, ema_decay=0.0).backward(_losses(out, target, scale), out)
        grads.append(out.grad)
    torch.testing.assert_close(grads[0], grads[1])
    # fixed weights do not: the scaled loss dominates
    out = target.clone().add_(torch.linspace(-1, 1, 32)).requires_grad_(True)
    FixedWeights({"mse": 1.0, "l1": 1.0}).backward(_losses(out, target, 1000.0))
    assert not torch.allclose(out.grad, grads[0])


def test_balancer_reaches_model_parameters() -> None:
    model = torch.nn.Conv1d(1, 1, 3, padding=1)
    x, target = torch.randn(2, 1, 32), torch.randn(2, 1, 32)
    bal = GradientBalancer({"mse": 1.0, "l1": 1.0}, ema_decay=0.9)
    out = model(x)
    metrics = bal.backward(_losses(out, target), out)
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
    assert set(metrics) == {"grad_norm/mse", "grad_norm/l1", "ratio/mse", "ratio/l1"}
    assert metrics["ratio/mse"].item() + metrics["ratio/l1"].item() == pytest.approx(1.0)


def test_balancer_scales_by_the_moving_average_of_the_norms() -> None:
    # Three steps whose mse gradient norms differ (the loss is scaled 1, 10, 100): the third step's gradient is
    # scaled by the bias-corrected EMA of all three norms, computed here from the per-step norms.
    decay, target = 0.9, torch.randn(2, 1, 32)
    bal = GradientBalancer({"mse": 3.0, "l1": 1.0}, total_norm=1.0, ema_decay=decay, per_batch_item=False)
    norms: dict[str, list[float]] = {"mse": [], "l1": []}
    for scale in (1.0, 10.0, 100.0):
        out = target.clone().add_(torch.linspace(-1, 1, 32)).requires_grad_(True)
        metrics = bal.backward(_losses(out, target, scale), out)
        for k in norms:
            norms[k].append(metrics[f"grad_norm/{k}"].item())
    grads = {k: torch.autograd.grad(_losses(out, target, 100.0)[k], out)[0] for k in norms}
    for k in norms:
        assert norms[k][-1] == pytest.approx(grads[k].norm().item(), rel=1e-5)
    assert norms["mse"][2] == pytest.approx(100 * norms["mse"][0], rel=1e-4)  # the EMA has history to keep

    def ema(values: list[float]) -> float:
        weights = [decay ** (len(values) - 1 - i) for i in range(len(values))]
        return sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)

    expected = 0.75 * grads["mse"] / ema(norms["mse"]) + 0.25 * grads["l1"] / ema(norms["l1"])
    torch.testing.assert_close(out.grad, expected, rtol=1e-5, atol=1e-8)
    # with only the latest norm (no history) the mse gradient would be 2.5x smaller than the EMA makes it
    assert ema(norms["mse"]) < 0.7 * norms["mse"][-1]


def test_fixed_weights_match_weighted_sum() -> None:
    target = torch.randn(2, 1, 16)
    out = torch.randn(2, 1, 16, requires_grad=True)
    FixedWeights({"mse": 2.0, "l1": 0.5}).backward(_losses(out, target))
    ref = out.detach().clone().requires_grad_(True)
    parts = _losses(ref, target)
    (2.0 * parts["mse"] + 0.5 * parts["l1"]).backward()
    torch.testing.assert_close(out.grad, ref.grad)


def test_bad_inputs() -> None:
    out = torch.randn(2, 1, 8, requires_grad=True)
    bal = GradientBalancer({"a": 1.0})
    with pytest.raises(ValueError, match="no weight"):
        bal.backward({"b": out.sum()}, out)
    with pytest.raises(ValueError, match="does not depend on output"):
        bal.backward({"a": torch.tensor(1.0, requires_grad=True) * 2}, out)
    with pytest.raises(ValueError, match="require grad"):
        bal.backward({"a": out.sum()}, out.detach())
    with pytest.raises(ValueError, match=">= 0"):
        GradientBalancer({"a": -1.0})
    with pytest.raises(ValueError, match="ema_decay"):
        GradientBalancer({"a": 1.0}, ema_decay=1.0)
