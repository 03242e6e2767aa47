"""Nearest-code search and code lookup: a chunked torch reference and fused Triton kernels, one dispatch.

``nearest`` and ``lookup`` dispatch on the tensors' device (never on environment variables): Triton for CUDA
tensors when Triton imports, the torch reference otherwise. Nothing else in voxtok builds a full N x K distance
matrix.
"""

from __future__ import annotations

from voxtok.kernels.dispatch import lookup, nearest

__all__ = ["lookup", "nearest"]
