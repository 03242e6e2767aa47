"""Combining generator losses: fixed weights, or EnCodec's gradient-norm balancer.

Both share one call, ``weights.backward(losses, output)``: ``losses`` maps names to scalar losses that depend on
the model ``output`` (the reconstructed audio ``[B, C, S]``), and the call back-propagates their combination into
the model. Losses that do not go through ``output`` (quantizer commitment, distillation on latents) are added
to the graph separately with their own fixed weights, as EnCodec does.

The balancer (Défossez et al. 2022, "High Fidelity Neural Audio Compression", section 3.4) takes the gradient
``g_i = dL_i / d output`` of each loss and rescales it so that its norm is ``total_norm * w_i / sum(w)``, with
the norm tracked by an exponential moving average. The weights then say what fraction of the gradient each loss
contributes, whatever the losses' natural scales.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, autograd, nn

__all__ = ["FixedWeights", "GradientBalancer"]


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not weights:
        raise ValueError("weights must name at least one loss")
    bad = {k: v for k, v in weights.items() if not v >= 0}
    if bad:
        raise ValueError(f"loss weights must be >= 0; got {bad}")
    return {k: float(v) for k, v in weights.items()}


def _check_losses(losses: Mapping[str, Tensor], weights: Mapping[str, float]) -> None:
    unknown = sorted(set(losses) - set(weights))
    if unknown:
        raise ValueError(f"no weight for loss(es) {unknown}; weights are given for {sorted(weights)}")
    for name, loss in losses.items():
        if loss.dim() != 0:
            raise ValueError(f"loss {name!r} must be a scalar; got shape {tuple(loss.shape)}")


class FixedWeights(nn.Module):
    """``sum(w_i * L_i)``: the plain weighted sum, with the balancer's interface."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.weights = _check_weights(weights)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The weighted sum as a scalar tensor (for callers that run ``backward`` themselves)."""
        _check_losses(losses, self.weights)
        return torch.stack([self.weights[k] * v for k, v in losses.items()]).sum()

    def backward(self, losses: Mapping[str, Tensor], output: Tensor | None = None) -> dict[str, Tensor]:
        """Back-propagate the weighted sum; ``output`` is accepted for interface parity and unused."""
        total = self.combine(losses)
        total.backward()
        return {"total": total.detach()}


class GradientBalancer(nn.Module):
    """EnCodec's loss balancer.

    Args:
        weights: relative share of the output gradient per loss name.
        total_norm: norm of the combined gradient handed to the model (EnCodec: 1).
        ema_decay: decay of the moving average of each gradient norm (EnCodec: 0.999).
        per_batch_item: take the gradient norm per batch item and average, rather than over the whole batch, so
            the batch size does not change the scale.
        epsilon: floor under the averaged norms.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        total_norm: float = 1.0,
        ema_decay: float = 0.999,
        per_batch_item: bool = True,
        epsilon: float = 1e-12,
    ) -> None:
        super().__init__()
        self.weights = _check_weights(weights)
        if sum(self.weights.values()) <= 0:
            raise ValueError(f"at least one weight must be positive; got {self.weights}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1); got {ema_decay}")
        self.total_norm = float(total_norm)
        self.ema_decay = float(ema_decay)
        self.per_batch_item = bool(per_batch_item)
        self.epsilon = float(epsilon)
        # Bias-corrected EMA: running sums of values and of weights (Adam-style correction).
        self._ema_sum: dict[str, float] = {}
        self._ema_count: dict[str, float] = {}

    def _update(self, name: str, value: float) -> float:
        s = self._ema_sum.get(name, 0.0) * self.ema_decay + value
        c = self._ema_count.get(name, 0.0) * self.ema_decay + 1.0
        self._ema_sum[name], self._ema_count[name] = s, c
        return s / c

    def backward(self, losses: Mapping[str, Tensor], output: Tensor) -> dict[str, Tensor]:
        """Back-propagate the balanced combination of ``losses`` through ``output`` (``[B, ...]``).

        Returns metrics: ``grad_norm/<name>`` (this step's norm) and ``ratio/<name>`` (its share of the
        combined gradient before balancing).
        """
        _check_losses(losses, self.weights)
        if not output.requires_grad:
            raise ValueError("output must require grad: pass the model's output tensor, not a detached copy")
        grads: dict[str, Tensor] = {}
        norms: dict[str, float] = {}
        for name, loss in losses.items():
            (grad,) = autograd.grad(loss, [output], retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(
                    f"loss {name!r} does not depend on output; add it outside the balancer with a fixed weight"
                )
            if self.per_batch_item and grad.dim() > 1:
                norm = grad.flatten(1).norm(dim=1).mean()
            else:
                norm = grad.norm()
            grads[name], norms[name] = grad, float(norm)
        averaged = {name: self._update(name, n) for name, n in norms.items()}
        weight_sum = sum(self.weights[name] for name in losses)
        if weight_sum <= 0:
            raise ValueError(f"the losses given ({sorted(losses)}) all have weight 0; nothing to back-propagate")
        combined = torch.zeros_like(output)
        for name, grad in grads.items():
            scale = self.weights[name] / weight_sum * self.total_norm / (self.epsilon + averaged[name])
            combined = combined + scale * grad
        output.backward(combined)
        norm_total = sum(norms.values()) or 1.0
        metrics = {f"grad_norm/{k}": torch.tensor(v) for k, v in norms.items()}
        metrics.update({f"ratio/{k}": torch.tensor(v / norm_total) for k, v in norms.items()})
        return metrics
