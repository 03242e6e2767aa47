"""Helpers for the converter tests: make every tensor of a random reference distinguishable, and compare audio
with a bound that scales with the signal."""

from __future__ import annotations

import torch


def distinct_constants_(module: torch.nn.Module, seed: int = 0, only: tuple[str, ...] = ()) -> list[str]:
    """Give every parameter that holds one repeated value (LayerNorm weights 1 and biases 0, layer scales, Snake
    alphas, zero biases) distinct values around it, in place; returns their names.

    Freshly built references leave these tensors constant and equal to each other, so a converter that maps one
    onto another (``norm1`` <-> ``norm2``, the two layer scales, two Snake alphas) would change nothing a test
    could see. Values stay near the original (a 1 becomes 1 +- 0.3, a 0 becomes +- 0.02, a positive scale keeps
    its sign), so the model still behaves like the reference. ``only``: restrict to parameters whose name contains
    one of these strings (perturbing every zero bias can move a deep RVQ stage onto a near-tie)."""
    g = torch.Generator().manual_seed(seed)
    changed = []
    with torch.no_grad():
        for name, p in module.named_parameters():
            flat = p.detach().reshape(-1)
            if not p.is_floating_point() or flat.numel() < 2 or not bool((flat == flat[0]).all()):
                continue
            if only and not any(key in name for key in only):
                continue
            base = float(flat[0])
            noise = torch.rand(p.shape, generator=g) * 2 - 1
            p.copy_(base * (1 + 0.3 * noise) if base else 0.02 * noise)
            changed.append(name)
    return changed


def assert_audio_close(ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> None:
    """Max abs difference within ``rel`` of the reference's peak: a bound that scales with the signal, so a quiet
    output (random decoders give ~1e-2 peaks) cannot hide a wrong weight. Measured float32 agreement is 1e-7 to
    1e-6 of the peak; a swapped tensor moves the output by 1e-3 of it or more."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    peak = float(ref.abs().max())
    assert peak > 1e-6, f"the reference output is silent (peak {peak}): nothing to compare"
    err = float((ours - ref).abs().max())
    assert err <= rel * peak, f"max abs difference {err:.3g} is {err / peak:.3g} of the peak {peak:.3g} (> {rel})"
