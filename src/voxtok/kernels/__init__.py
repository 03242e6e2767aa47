"""Compute kernels, each behind one dispatch: nearest-code search and code lookup (a chunked torch reference and
fused Triton kernels), and 1-D convolutions on either memory layout (the CPU-speed paths of the conv layers).

``nearest`` and ``lookup`` dispatch on the tensors' device (never on environment variables): Triton for CUDA
tensors when Triton imports, the torch reference otherwise. Nothing else in voxtok builds a full N x K distance
matrix. ``conv1d`` / ``padded_conv1d`` / ``conv_transpose1d`` dispatch on the input's memory layout and the
layer's shape (``voxtok.kernels.conv``).
"""

from __future__ import annotations

from voxtok.kernels.conv import conv1d, conv_transpose1d, padded_conv1d, time_major
from voxtok.kernels.dispatch import lookup, nearest

__all__ = ["conv1d", "conv_transpose1d", "lookup", "nearest", "padded_conv1d", "time_major"]
