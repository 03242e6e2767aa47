"""Fused nearest-code search in Triton: the N x K distance matrix never leaves the chip.

One program owns ``BLOCK_N`` rows of ``x``. It streams the codebook in tiles of ``BLOCK_K`` codes, computes
``||c||^2 - 2 x.c`` with ``tl.dot`` (fp32 accumulation) and keeps an online argmin per row (strict ``<`` across
tiles and ``tl.min``'s left tie-break inside one: the first index wins, as ``torch.argmin``). When D fits in one
``BLOCK_D`` the x tile is loaded once and stays in registers for the whole K loop; otherwise the dot is
accumulated over D blocks.

Both sides are translated by a pivot (``reference.pivot_row``: the codebook row nearest its mean) before the dot:
the codebook once on the host, each x tile in the kernel. The scores then carry the codebook's spread rather than
its offset from the origin, whose cancellation made fp32 pick wrong codes on latents far from the origin.

Padded codebook columns load ``||c||^2 = +inf`` (and a zero code), so their distance is ``+inf`` and they can never
win; padded rows of ``x`` compute garbage that is never stored.

Numerics: distances are compared in fp32. With ``RECHECK`` (the default) the kernel also keeps the runner-up per
row and, at the end, recomputes both candidates' distances exactly as ``sum((x - c)^2)`` in fp32 from the
untranslated rows and keeps the better one (the lower index on a tie): the guard against the rounding of the
scores, of fp16 / bf16 operands in particular. Whatever the mode, the returned distance is that exact
``sum((x - c)^2)`` of the winner, as in the torch reference.

Called on CUDA tensors by ``voxtok.kernels.nearest``; the tests call ``nearest_triton`` on CPU tensors under
``TRITON_INTERPRET=1``. The interpreter computes a bf16 ``tl.dot`` wrongly, so on CPU tensors (that is, only under
the interpreter) the kernel upcasts its tiles to fp32 first (``UPCAST``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from voxtok.kernels.reference import pivot_row, squared_norms

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@triton.jit
def _nearest_kernel(
    x_ptr,
    c_ptr,
    raw_ptr,
    center_ptr,
    csq_ptr,
    idx_ptr,
    dist_ptr,
    N,
    K,
    D,
    stride_x,
    stride_c,
    stride_raw,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ONE_D_BLOCK: tl.constexpr,
    RECHECK: tl.constexpr,
    UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * stride_x
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    if ONE_D_BLOCK:
        d_ok = offs_d < D
        x_tile = tl.load(x_rows + offs_d[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        x_tile -= tl.load(center_ptr + offs_d, mask=d_ok, other=0.0)[None, :]
        if not UPCAST:
            x_tile = x_tile.to(c_ptr.dtype.element_ty)  # the dot's operand dtype (fp16 / bf16 stay)

    best = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_i = tl.zeros([BLOCK_N], tl.int32)
    second = tl.full([BLOCK_N], float("inf"), tl.float32)
    second_i = tl.zeros([BLOCK_N], tl.int32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        k_ok = ks < K
        c_rows = c_ptr + ks.to(tl.int64)[:, None] * stride_c
        if ONE_D_BLOCK:
            c_tile = tl.load(c_rows + offs_d[None, :], mask=k_ok[:, None] & (offs_d[None, :] < D), other=0.0)
            if UPCAST:
                c_tile = c_tile.to(tl.float32)
            dot = tl.dot(x_tile, tl.trans(c_tile), input_precision=PRECISION)
        else:
            dot = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
            for d0 in range(0, D, BLOCK_D):
                d = d0 + offs_d
                d_ok = d < D
                xt = tl.load(x_rows + d[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
                xt -= tl.load(center_ptr + d, mask=d_ok, other=0.0)[None, :]
                ct = tl.load(c_rows + d[None, :], mask=k_ok[:, None] & d_ok[None, :], other=0.0)
                if UPCAST:
                    ct = ct.to(tl.float32)
                else:
                    xt = xt.to(c_ptr.dtype.element_ty)
                dot = tl.dot(xt, tl.trans(ct), dot, input_precision=PRECISION)
        csq = tl.load(csq_ptr + ks, mask=k_ok, other=float("inf"))
        dist = csq[None, :] - 2.0 * dot
        tile_min, tile_arg = tl.min(dist, axis=1, return_indices=True)
        take = tile_min < best
        if RECHECK:
            # Runner-up inside this tile, then the best two of (best, second, tile_min, tile_2nd) in index order:
            # the earlier candidate keeps a tie.
            rest = tl.where(offs_k[None, :] == tile_arg[:, None], float("inf"), dist)
            tile_2nd, tile_2nd_arg = tl.min(rest, axis=1, return_indices=True)
            new_second = tl.where(take, tl.minimum(best, tile_2nd), tl.minimum(second, tile_min))
            second_i = tl.where(
                take,
                tl.where(tile_2nd < best, k0 + tile_2nd_arg, best_i),
                tl.where(tile_min < second, k0 + tile_arg, second_i),
            )
            second = new_second
        best = tl.where(take, tile_min, best)
        best_i = tl.where(take, k0 + tile_arg, best_i)

    # Exact distances of the winner (and of the runner-up), from the difference of the untranslated rows.
    exact = tl.zeros([BLOCK_N], tl.float32)
    exact_2nd = tl.zeros([BLOCK_N], tl.float32)
    best_rows = raw_ptr + best_i.to(tl.int64)[:, None] * stride_raw
    second_rows = raw_ptr + second_i.to(tl.int64)[:, None] * stride_raw
    for d0 in range(0, D, BLOCK_D):
        d = d0 + offs_d
        m = row_ok[:, None] & (d[None, :] < D)
        xv = tl.load(x_rows + d[None, :], mask=m, other=0.0).to(tl.float32)
        diff = xv - tl.load(best_rows + d[None, :], mask=m, other=0.0).to(tl.float32)
        exact += tl.sum(diff * diff, axis=1)
        if RECHECK:
            diff2 = xv - tl.load(second_rows + d[None, :], mask=m, other=0.0).to(tl.float32)
            exact_2nd += tl.sum(diff2 * diff2, axis=1)
    if RECHECK:
        swap = (exact_2nd < exact) | ((exact_2nd == exact) & (second_i < best_i))
        best_i = tl.where(swap, second_i, best_i)
        exact = tl.where(swap, exact_2nd, exact)
    tl.store(idx_ptr + rows, best_i.to(tl.int64), mask=row_ok)
    tl.store(dist_ptr + rows, exact, mask=row_ok)


def _kernel_dtype(x: Tensor, codebook: Tensor) -> torch.dtype:
    """One dtype for both operands of ``tl.dot``: a shared fp16 / bf16 stays, anything else runs in fp32."""
    if x.dtype == codebook.dtype and x.dtype in _LOW_PRECISION:
        return x.dtype
    return torch.float32


def _config(dim: int, dtype: torch.dtype) -> dict[str, int]:
    """Block shape and launch parameters for a GPU (H100-class). D <= 64 keeps the x tile in registers."""
    if dim <= 64:
        return {
            "block_n": 128,
            "block_k": 128,
            "block_d": max(16, triton.next_power_of_2(dim)),
            "num_warps": 8,
            "num_stages": 3,
        }
    # fp32 tiles are twice as large: a shorter D block keeps three pipeline stages inside shared memory.
    return {
        "block_n": 128,
        "block_k": 128,
        "block_d": 32 if dtype == torch.float32 else 64,
        "num_warps": 8,
        "num_stages": 3,
    }


@torch.no_grad()
def nearest_triton(
    x: Tensor,
    codebook: Tensor,
    metric: str = "l2",
    codebook_sqnorm: Tensor | None = None,
    codebook_center: Tensor | None = None,
    *,
    recheck: bool | None = None,
    block_n: int | None = None,
    block_k: int | None = None,
    block_d: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Nearest codebook row for every row of ``x`` with the fused kernel. Inputs are assumed validated.

    Args:
        x: ``[N, D]`` floating queries (CUDA; CPU only under ``TRITON_INTERPRET=1``).
        codebook: ``[K, D]`` floating codes, K >= 1.
        metric: ``"l2"`` or ``"cosine"`` (both sides l2-normalised first, then l2).
        codebook_sqnorm: optional ``[K]`` squared norms ``||c - codebook_center||^2`` (ignored for ``"cosine"``).
        codebook_center: optional ``[D]`` translation (ignored for ``"cosine"``); default as ``nearest_reference``.
        recheck: re-rank the best two candidates exactly (default on).
        block_n, block_k, block_d: powers of two overriding the block shape (tests use small ones).

    Returns:
        ``(indices [N] int64, distances [N] float32)`` as ``nearest_reference``.
    """
    dtype = _kernel_dtype(x, codebook)
    if metric == "cosine":
        xk = F.normalize(x.float(), dim=1).to(dtype)
        raw = F.normalize(codebook.float(), dim=1)
        center = pivot_row(raw)
    else:
        xk, raw = x.to(dtype), codebook
        if codebook_center is not None:
            center = codebook_center.float()
        elif codebook_sqnorm is not None:
            center = torch.zeros(x.shape[1], dtype=torch.float32, device=x.device)
        else:
            center = pivot_row(codebook, torch.float32)
    ck = (raw.float() - center).to(dtype)  # translated once; the kernel translates each x tile
    if codebook_sqnorm is not None and metric != "cosine":
        sqnorm = codebook_sqnorm.float()
    else:
        sqnorm = squared_norms(ck.float())
    xk, ck, raw = xk.contiguous(), ck.contiguous(), raw.contiguous()
    sqnorm, center = sqnorm.contiguous(), center.contiguous()
    n_rows, dim = xk.shape
    k_codes = ck.shape[0]

    cfg = _config(dim, dtype)
    bn, bk, bd = block_n or cfg["block_n"], block_k or cfg["block_k"], block_d or cfg["block_d"]
    for name, value in (("block_n", bn), ("block_k", bk), ("block_d", bd)):
        if value & (value - 1):  # tl.arange needs powers of two
            raise ValueError(f"{name} must be a power of two; got {value}")
    indices = torch.empty(n_rows, dtype=torch.int64, device=x.device)
    distances = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    if n_rows == 0:
        return indices, distances
    _nearest_kernel[(triton.cdiv(n_rows, bn),)](
        xk,
        ck,
        raw,
        center,
        sqnorm,
        indices,
        distances,
        n_rows,
        k_codes,
        dim,
        xk.stride(0),
        ck.stride(0),
        raw.stride(0),
        BLOCK_N=bn,
        BLOCK_K=bk,
        BLOCK_D=bd,
        ONE_D_BLOCK=dim <= bd,
        RECHECK=True if recheck is None else recheck,
        UPCAST=not x.is_cuda,
        # fp32 inputs: three TF32 passes give ~fp32 accuracy on tensor cores; fp16 / bf16 ignore the setting.
        PRECISION="tf32x3" if dtype == torch.float32 else "tf32",
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    return indices, distances
