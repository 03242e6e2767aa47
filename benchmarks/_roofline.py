"""Arithmetic counts for the speed benchmarks: how close a part runs to what this CPU can do at all.

A part whose time goes to dense matrix products (GEMMs and convolutions) cannot beat another implementation of
the same arithmetic by more than the headroom between that implementation and the machine's peak. The models
and interop benchmarks print, per part, the floating-point operations of one call, the rate each implementation
reaches, and the *ceiling*: the speed-up over the reference that a part running at the measured fp32 GEMM peak
would reach. A ceiling below a target says the target needs less arithmetic or other precision, not better code.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode


def gemm_peak(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GEMM rate in FLOP/s at the current thread count (median of ``repeats`` square products)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times)


def count_flops(fn: Callable[[Tensor], object], x: Tensor) -> int:
    """FLOPs of one ``fn(x)`` call, as torch's flop counter sees them: matmuls, convolutions and attention
    (elementwise work is not counted, so the rates below are lower bounds of the arithmetic done)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops()
