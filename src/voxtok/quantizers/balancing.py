"""Codebook balancing: k-means init, EMA updates, dead-code restart, all synchronised under torch.distributed.

Every function here takes only valid (unpadded) frames, detached, in float32. Under an initialised process
group the statistics are summed over ranks (EMA sums and counts, k-means sums and counts) and random picks are
gathered from all ranks in a fixed order, so every rank computes the identical codebook after every step; the
bug class behind vector-quantize-pytorch #25 / #105 / #222 and espnet #6284 is ranks drifting apart.

EMA counts are in frames per step summed over ranks; ``dead_code_threshold`` is compared with them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from voxtok.kernels import nearest

__all__ = [
    "all_reduce_",
    "ema_codebook",
    "ema_update_",
    "is_distributed",
    "kmeans",
    "replace_dead_codes_",
    "sample_rows",
]

# Laplace smoothing of EMA counts (EnCodec / SoundStream): keeps an unused code's centroid finite.
EMA_EPS = 1e-5


def is_distributed() -> bool:
    """True under an initialised torch.distributed process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_(t: Tensor) -> Tensor:
    """Sum ``t`` over ranks in place (no-op outside torch.distributed)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sample_rows(x: Tensor, n: int) -> Tensor:
    """``n`` random rows of ``x [N, D]``, drawn from every rank's rows.

    Each rank draws ``n`` rows of its own (without replacement when it has enough, with replacement
    otherwise); the draws are gathered and row ``j`` of the result comes from the ``j % R``-th rank that has
    any rows, so all ranks return the same ``[n, D]`` tensor. Raises when no rank has a row.
    """
    d = x.shape[1]
    if n == 0:
        return x.new_zeros(0, d)
    if x.shape[0] >= n:
        local = x[torch.randperm(x.shape[0], device=x.device)[:n]]
    elif x.shape[0] > 0:
        local = x[torch.randint(x.shape[0], (n,), device=x.device)]
    else:
        local = x.new_zeros(n, d)
    if not is_distributed():
        if x.shape[0] == 0:
            raise ValueError("cannot sample codebook vectors from a batch with no valid frame")
        return local
    world = dist.get_world_size()
    have = torch.tensor([float(x.shape[0] > 0)], device=x.device)
    haves = [torch.zeros_like(have) for _ in range(world)]
    dist.all_gather(haves, have)
    draws = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(draws, local.contiguous())
    donors = [r for r in range(world) if haves[r].item() > 0]
    if not donors:
        raise ValueError("cannot sample codebook vectors: no rank has a valid frame in this batch")
    stacked = torch.stack([draws[r] for r in donors])  # [R', n, D]
    pick = torch.arange(n, device=x.device)
    return stacked[pick % len(donors), pick]


def _normalize_if(x: Tensor, metric: str) -> Tensor:
    return F.normalize(x, dim=-1) if metric == "cosine" else x


def kmeans(x: Tensor, k: int, iters: int, metric: str = "l2") -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on the valid frames of all ranks.

    Args:
        x: ``[N, D]`` float32 valid frames of this rank (detached).
        k: number of centroids.
        iters: Lloyd iterations after seeding with ``k`` random frames (``sample_rows``).
        metric: ``"l2"`` or ``"cosine"`` (spherical k-means: frames and centroids on the unit sphere).

    Returns:
        ``(centroids [k, D], counts [k])``: counts are the frames per centroid at the last assignment, summed
        over ranks. An empty cluster keeps its previous centroid (and count 0, so dead-code restart picks it).
    """
    x = _normalize_if(x, metric)
    centroids = _normalize_if(sample_rows(x, k), metric)
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(iters, 1)):
        idx, _ = nearest(x, centroids, metric=metric, check_finite=False)  # frames the quantizer checked
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        all_reduce_(counts)
        all_reduce_(sums)
        filled = counts > 0
        centroids = torch.where(filled[:, None], sums / counts.clamp_min(1.0)[:, None], centroids)
        centroids = _normalize_if(centroids, metric)
    return centroids, counts


def ema_update_(ema_count: Tensor, ema_sum: Tensor | None, indices: Tensor, x: Tensor | None, decay: float) -> int:
    """One EMA step of the per-code frame counts ``[K]`` and vector sums ``[K, D]`` (in place).

    ``indices [N]`` are the codes of the valid frames ``x [N, D]``. The batch statistics are a bincount and
    an ``index_add_`` (no N x K one-hot), summed over ranks before the update. With ``ema_sum`` None only
    the counts move (a learned codebook tracks usage for dead-code restart this way).

    Returns the number of valid frames over all ranks; when it is 0 (an all-padding step) nothing moves.
    """
    counts = torch.bincount(indices, minlength=ema_count.shape[0]).to(ema_count.dtype)
    all_reduce_(counts)
    total = int(counts.sum().item())
    if total == 0:
        return 0
    ema_count.mul_(decay).add_(counts, alpha=1.0 - decay)
    if ema_sum is not None and x is not None:
        sums = torch.zeros_like(ema_sum).index_add_(0, indices, x.to(ema_sum.dtype))
        all_reduce_(sums)
        ema_sum.mul_(decay).add_(sums, alpha=1.0 - decay)
    return total


def ema_codebook(ema_count: Tensor, ema_sum: Tensor, metric: str = "l2") -> Tensor:
    """Codebook ``[K, D]`` from EMA sums over Laplace-smoothed EMA counts."""
    total = ema_count.sum()
    k = ema_count.shape[0]
    smoothed = (ema_count + EMA_EPS) / (total + k * EMA_EPS) * total
    return _normalize_if(ema_sum / smoothed.clamp_min(1e-12)[:, None], metric)


def replace_dead_codes_(
    codebook: Tensor,
    ema_count: Tensor,
    ema_sum: Tensor | None,
    x: Tensor,
    threshold: float,
    metric: str = "l2",
) -> int:
    """Restart codes whose EMA count is under ``threshold`` at random valid frames of the batch (all ranks).

    The restarted codes' EMA state is reset with them: count = ``threshold``, sum = vector * ``threshold``
    (a restarted code that wins no frame at the next step falls under the threshold again and moves on).

    Args:
        codebook: ``[K, D]`` codes, changed in place (a buffer, or a parameter's ``.data``).
        ema_count: ``[K]`` EMA counts, changed in place.
        ema_sum: ``[K, D]`` EMA sums (None for a learned codebook), changed in place.
        x: ``[N, D]`` valid frames of this rank in code space (detached, float32); at least one rank must
            have one (``ema_update_`` returns the count).
        threshold: EMA count under which a code is dead; 0 disables restarts.

    Returns:
        The number of codes restarted (identical on every rank).
    """
    if threshold <= 0:
        return 0
    dead = ema_count < threshold
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    fresh = _normalize_if(sample_rows(x, n_dead), metric).to(codebook.dtype)
    codebook[dead] = fresh
    ema_count[dead] = threshold
    if ema_sum is not None:
        ema_sum[dead] = fresh * threshold
    return n_dead
