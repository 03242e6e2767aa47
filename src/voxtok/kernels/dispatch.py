"""One entry point per operation; picks the implementation from the tensors' device (never an environment variable).

CUDA tensors go to the Triton kernel when Triton imports, everything else to the chunked torch reference. So with
``TRITON_INTERPRET=1`` set (the tests set it), ``nearest`` on CPU tensors still takes the torch path; the tests call
the Triton kernel directly.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from voxtok.kernels.reference import nearest_reference

METRICS = ("l2", "cosine")


@functools.cache
def _triton_nearest():
    """The Triton implementation, or None when Triton does not import. Imported on first CUDA call only."""
    try:
        from voxtok.kernels.triton_nearest import nearest_triton
    except ImportError:
        return None
    return nearest_triton


def backend(x: Tensor) -> str:
    """``"triton"`` or ``"torch"``: the implementation ``nearest`` uses for tensors on ``x``'s device."""
    return "triton" if x.is_cuda and _triton_nearest() is not None else "torch"


def _check_finite(name: str, t: Tensor) -> None:
    # aminmax propagates NaN and sees +-inf, without an [N, D] boolean temporary on the (usual) good path.
    lo, hi = torch.aminmax(t)
    if bool(torch.isfinite(lo) & torch.isfinite(hi)):
        return
    bad = (~torch.isfinite(t)).nonzero()[0].tolist()
    raise ValueError(f"{name} must be finite; got {t[tuple(bad)].item()} at {name}{bad}")


def _validate(
    x: Tensor,
    codebook: Tensor,
    metric: str,
    codebook_sqnorm: Tensor | None,
    codebook_center: Tensor | None,
    check_finite: bool,
) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    for name, t in (("x", x), ("codebook", codebook)):
        if not isinstance(t, Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 2-D tensor ([N, D] / [K, D]); got {shape}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor; got dtype {t.dtype}")
    if codebook.shape[0] == 0:
        raise ValueError(f"codebook is empty: got shape {tuple(codebook.shape)}, expected [K, D] with K >= 1")
    if x.shape[1] != codebook.shape[1]:
        raise ValueError(f"x and codebook must share D; got x {tuple(x.shape)} and codebook {tuple(codebook.shape)}")
    if x.shape[1] == 0:
        raise ValueError("D must be >= 1; got D=0")
    if x.device != codebook.device:
        raise ValueError(f"x and codebook must be on one device; got {x.device} and {codebook.device}")
    for name, t, axis, label in (("codebook_sqnorm", codebook_sqnorm, 0, "K"),
                                 ("codebook_center", codebook_center, 1, "D")):  # fmt: skip
        if t is None:
            continue
        if t.shape != (codebook.shape[axis],) or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating [{label}] = [{codebook.shape[axis]}] tensor; "
                             f"got {t.dtype} {tuple(t.shape)}")
        if t.device != codebook.device:
            raise ValueError(f"{name} is on {t.device}, codebook on {codebook.device}")
    if codebook_center is not None:
        _check_finite("codebook_center", codebook_center[None])
    if not check_finite:
        return
    if x.numel():
        _check_finite("x", x)
    _check_finite("codebook", codebook)


def nearest(
    x: Tensor,
    codebook: Tensor,
    metric: str = "l2",
    codebook_sqnorm: Tensor | None = None,
    codebook_center: Tensor | None = None,
    *,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor]:
    """Nearest codebook row for every row of ``x``, without an ``[N, K]`` distance matrix.

    Runs under ``no_grad``: the results are detached (gradients reach the codebook through ``lookup``).

    Args:
        x: ``[N, D]`` floating queries (fp32, fp16, bf16 or fp64).
        codebook: ``[K, D]`` floating codes, K >= 1, on the same device.
        metric: ``"l2"`` (squared Euclidean) or ``"cosine"`` (both sides l2-normalised first, then l2).
        codebook_sqnorm: optional precomputed ``[K]`` squared norms ``||c_k - codebook_center||^2`` for ``"l2"``
            (with no ``codebook_center``: of the raw rows); ignored for ``"cosine"``.
        codebook_center: optional ``[D]`` point both sides are translated by before the scores are computed
            (``"l2"`` only). Default: the codebook row nearest the codebook's mean, or the origin when
            ``codebook_sqnorm`` is given without a centre. Latents far from the origin need a centre near the
            codebook: scores about the origin cancel catastrophically there.
        check_finite: scan ``x`` and ``codebook`` for NaN / inf (one pass over each). Callers that validated their
            input at their own entry point pass False (a quantizer's stages, k-means iterations), so a check costs
            one pass per call of the public API, not one per stage; shapes are always checked.

    Returns:
        ``(indices [N] int64, distances [N] float32)``. ``distances`` is the squared l2 distance from each row to
        its code, ``sum((x - c)^2)`` computed from the difference in fp32 or better (so >= 0, no cancellation);
        for ``"cosine"`` it is between the unit vectors, i.e. ``2 - 2 cos``. The CPU path returns the float64
        argmin of the distances (fp32 scores, rows it cannot certify searched again in float64); the Triton path
        re-ranks its best two candidates exactly. Ties go to the lowest index, as ``torch.argmin``.

    Raises:
        ValueError: unknown metric, non-2-D or non-floating inputs, mismatched D, an empty codebook, inputs on two
            devices, a malformed ``codebook_sqnorm`` or ``codebook_center``, or a NaN / inf in ``x``, ``codebook``
            or ``codebook_center``.
    """
    _validate(x, codebook, metric, codebook_sqnorm, codebook_center, check_finite)
    with torch.no_grad():
        x, codebook = x.detach(), codebook.detach()
        if codebook_sqnorm is not None:
            codebook_sqnorm = codebook_sqnorm.detach()
        if codebook_center is not None:
            codebook_center = codebook_center.detach()
        impl = _triton_nearest() if backend(x) == "triton" else nearest_reference
        return impl(x, codebook, metric, codebook_sqnorm, codebook_center)


def lookup(indices: Tensor, codebook: Tensor, *, check_range: bool = True) -> Tensor:
    """Rows of ``codebook [K, D]`` at ``indices [...]`` -> ``[..., D]``; differentiable to the codebook.

    A gather (``F.embedding``) whose backward scatter-adds into the codebook gradient. A Triton gather did not pay
    for itself (docs/kernels.md). Out-of-range indices raise ``ValueError`` on CPU; on CUDA the range is not checked
    on the host (that would synchronise every call) and the gather's device assert fires instead. ``check_range``
    False skips the CPU check, for indices already known to be in range (from ``nearest``, or codes a quantizer
    validated at its ``decode``).
    """
    if not isinstance(codebook, Tensor) or codebook.dim() != 2:
        raise ValueError(f"codebook must be a [K, D] tensor; got {getattr(codebook, 'shape', type(codebook))}")
    if indices.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"indices must be int64 or int32; got {indices.dtype}")
    if check_range and indices.device.type == "cpu" and indices.numel():
        lo, hi = torch.aminmax(indices)
        if lo < 0 or hi >= codebook.shape[0]:
            bad = lo.item() if lo < 0 else hi.item()
            raise ValueError(f"indices must be in [0, {codebook.shape[0]}); got {bad}")
    return F.embedding(indices, codebook)
