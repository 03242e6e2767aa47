"""Arithmetic counts for the speed benchmarks: how close a part runs to what this CPU can do at all.

A part whose time goes to dense matrix products (GEMMs and convolutions) cannot beat another implementation of
the same arithmetic by more than the headroom between that implementation and the machine's peak. The models
and interop benchmarks print, per part, the floating-point operations of one call, the rate each implementation
reaches, and the *ceiling*: the speed-up over the reference that a part running at the measured fp32 GEMM peak
would reach. A ceiling below a target says the target needs less arithmetic or other precision, not better code.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


def gemm_peak(repeats: int = 15) -> float:
    """Measured fp32 GEMM rate in FLOP/s at the current thread count: the fastest of ``repeats`` runs of each of
    three products (square, and the frame-by-channel shapes of Vocos and Transformer layers). A peak is what the
    machine can do, so the fastest run counts, not the median, which load from other jobs on a shared host lowers.
    """
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (400, 768, 2304), (512, 1024, 4096)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - t))
    return best


class _FlopCount(TorchDispatchMode):
    """Sums torch's per-op FLOP formulas over every op run inside it. ``FlopCounterMode`` itself also tracks
    modules through autograd hooks, which fails under ``inference_mode`` (where ``Codec.encode`` runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:
            # Under inference_mode composite ops (conv1d, matmul, linear) arrive whole: run their decomposition
            # inside this mode, so the convolution / mm it reaches is counted.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn: Callable[[Tensor], object], x: Tensor) -> int:
    """FLOPs of one ``fn(x)`` call, by torch's FLOP formulas: matmuls, convolutions and attention (elementwise
    work is not counted, so the rates below are lower bounds of the arithmetic done)."""
    with torch.inference_mode(), _FlopCount() as counter:
        fn(x)
    return counter.total
