"""Vector quantization with a balanced codebook (k-means init, EMA, dead-code restart)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.kernels import lookup, nearest
from voxtok.quantizers import balancing
from voxtok.quantizers.base import (
    Quantizer,
    code_histogram,
    fp32,
    masked_mse,
    project_frames,
    straight_through,
    unproject_frames,
    usage_metrics,
)
from voxtok.types import QuantizerOutput

__all__ = ["VectorQuantizer", "rotate_to"]

METRICS = ("l2", "cosine")
# Decay of the usage counts a learned codebook (``ema_decay=None``) keeps to find its dead codes.
USAGE_DECAY = 0.9


def rotate_to(e: Tensor, q: Tensor, eps: float = 1e-12) -> Tensor:
    """Rotation trick (Fifty et al. 2024, "Restructuring Vector Quantization with the Rotation Trick").

    Returns ``lambda R e`` with ``R`` the rotation taking ``e``'s direction to ``q``'s and
    ``lambda = |q| / |e|``, both treated as constants: the value is ``q`` (to rounding) and the gradient to
    ``e`` is ``lambda R^T`` times the incoming one, so it keeps the angle between the gradient and the code.

    Args:
        e: ``[N, D]`` encoder vectors (differentiable).
        q: ``[N, D]`` their codes.
    """
    with torch.no_grad():
        e_norm = e.norm(dim=-1, keepdim=True).clamp_min(eps)
        q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
        u = e / e_norm
        v = q / q_norm
        w = F.normalize(u + v, dim=-1, eps=eps)
        scale = q_norm / e_norm
    # R = I - 2 w w^T + 2 v u^T (a Householder reflection then a rank-one term), applied without forming R.
    rotated = e - 2.0 * (e * w).sum(-1, keepdim=True) * w + 2.0 * (e * u).sum(-1, keepdim=True) * v
    return rotated * scale


class VectorQuantizer(Quantizer):
    """One codebook of ``codebook_size`` vectors; nearest-code search in float32 through ``voxtok.kernels``.

    The defaults are the settings that won voxtok's rate-distortion benchmark (``benchmarks/quantizers.py``,
    ``docs/quantizers.md``): EMA codebook (decay 0.9), k-means init (10 Lloyd iterations), dead-code restart
    at an EMA count of 2, straight-through gradients.

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        codebook_size: number of codes ``K``.
        codebook_dim: dim of the code space; when it differs from ``dim`` the latents are projected in and out
            by linear layers (low-dimensional lookup, ViT-VQGAN / DAC). None = ``dim``.
        metric: ``"l2"``, or ``"cosine"``: latents and codes are l2-normalised before the search (DAC).
        ema_decay: EMA decay of the codebook statistics (VQ-VAE-2 / SoundStream); None = a learned codebook
            trained by the codebook loss (its gradient reaches the codebook through the gather). 0.9 won the
            benchmark (0.99, the usual choice, converges slower: up to 0.16 dB worse there).
        commitment_weight: weight of ``|e - sg(q)|^2`` in ``loss``.
        codebook_weight: weight of ``|sg(e) - q|^2`` in ``loss`` (learned codebook only).
        kmeans_init: initialise the codebook by k-means on the first training batch's valid frames.
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: codes whose EMA count (frames per step, summed over ranks) falls under it are
            restarted at random valid frames of the batch; 0 disables restarts.
        rotation_trick: pass gradients with the rotation trick instead of straight-through.
        raw_lookup: with ``metric="cosine"``, search by cosine but look up, decode and compute the losses with the
            raw (unnormalised) codebook rows and projected latents, and start the codebook unnormalised: DAC's
            arithmetic ("improved VQGAN" search, raw decoding), which its published weights need
            (``ResidualVectorQuantizer.named("dac", ...)``).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        metric: str = "l2",
        ema_decay: float | None = 0.9,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
        rotation_trick: bool = False,
        raw_lookup: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("codebook_size", codebook_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VectorQuantizer: {name} must be a positive int; got {value!r}")
        codebook_dim = dim if codebook_dim is None else codebook_dim
        if isinstance(codebook_dim, bool) or not isinstance(codebook_dim, int) or codebook_dim < 1:
            raise ValueError(f"VectorQuantizer: codebook_dim must be a positive int or None; got {codebook_dim!r}")
        if metric not in METRICS:
            raise ValueError(f"VectorQuantizer: metric must be one of {METRICS}; got {metric!r}")
        if raw_lookup and metric != "cosine":
            raise ValueError(f"VectorQuantizer: raw_lookup=True needs metric='cosine' (DAC); got metric={metric!r}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"VectorQuantizer: ema_decay must be in (0, 1) or None (learned); got {ema_decay!r}")
        if kmeans_iters < 1:
            raise ValueError(f"VectorQuantizer: kmeans_iters must be >= 1; got {kmeans_iters!r}")
        for name, value in (
            ("commitment_weight", commitment_weight),
            ("codebook_weight", codebook_weight),
            ("dead_code_threshold", dead_code_threshold),
        ):
            if not value >= 0.0:
                raise ValueError(f"VectorQuantizer: {name} must be >= 0; got {value!r}")

        self.dim = dim
        self.num_codebooks = 1
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.metric = metric
        self.ema_decay = ema_decay
        self.commitment_weight = float(commitment_weight)
        self.codebook_weight = float(codebook_weight)
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = float(dead_code_threshold)
        self.rotation_trick = rotation_trick
        self.raw_lookup = bool(raw_lookup)
        # Search, lookup and losses on unit vectors (cosine), unless the raw rows are looked up (DAC).
        self.normalized = metric == "cosine" and not raw_lookup

        self.project_in: nn.Module = nn.Linear(dim, codebook_dim) if codebook_dim != dim else nn.Identity()
        self.project_out: nn.Module = nn.Linear(codebook_dim, dim) if codebook_dim != dim else nn.Identity()

        init = torch.randn(codebook_size, codebook_dim)
        if self.normalized:
            init = F.normalize(init, dim=-1)
        if ema_decay is None:
            self.codebook = nn.Parameter(init)
            self.register_buffer("ema_sum", None)
        else:
            self.register_buffer("codebook", init)
            # Without k-means init each code starts as if it had seen one frame at its random position.
            self.register_buffer("ema_sum", init.clone())
        # Usage counts drive dead-code restart for both codebook kinds; persistent with the EMA state.
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    @property
    def uses_ema(self) -> bool:
        return self.ema_decay is not None

    def codebook_vectors(self) -> Tensor:
        """The ``[K, codebook_dim]`` codes the search and the lookup use (l2-normalised for ``cosine`` unless
        ``raw_lookup``)."""
        cb = self.codebook.float()
        return F.normalize(cb, dim=-1) if self.normalized else cb

    # ------------------------------------------------------------------------------------------------------

    def _project(self, z: Tensor) -> Tensor:
        """``[B, D, T]`` -> code-space frames ``[B * T, codebook_dim]`` (float32, normalised for cosine unless
        ``raw_lookup``: the search then normalises both sides itself)."""
        e = project_frames(self.project_in, z)
        return F.normalize(e, dim=-1) if self.normalized else e

    def _indices(self, e: Tensor, cb: Tensor) -> Tensor:
        # The latents were checked at the quantizer's public entry (check_latents), the codebook is its own state.
        idx, _ = nearest(e.detach(), cb.detach(), metric=self.metric, check_finite=False)
        return idx

    def _decode_indices(self, idx: Tensor, batch: int, frames: int) -> Tensor:
        """Indices ``[B * T]`` -> ``[B, D, T]``; the one path ``decode`` and eval ``forward`` share."""
        q = lookup(idx, self.codebook_vectors(), check_range=False)  # from nearest, or checked by decode
        return unproject_frames(self.project_out, q, batch, frames)

    def _encode(self, z: Tensor, n: int) -> Tensor:
        b, _, t = z.shape
        with fp32(z.device):
            return self._indices(self._project(z), self.codebook_vectors()).view(b, 1, t)

    def _decode(self, codes: Tensor) -> Tensor:
        b, _, t = codes.shape
        with fp32(codes.device):
            return self._decode_indices(codes[:, 0].reshape(-1), b, t)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        """Training: ``z_q`` is straight-through (or rotation trick), the loss is commitment (+ codebook for a
        learned codebook), and the codebook is balanced (k-means init on the first call, EMA, dead codes).
        Eval: ``z_q = decode(codes)`` exactly. Padded frames (``mask`` False) reach no statistic."""
        b, _, t = z.shape
        with fp32(z.device):
            e = self._project(z)
            valid = None if mask is None else mask.reshape(-1)
            if self.training and not bool(self.initialized):
                self._kmeans_init(e.detach() if valid is None else e.detach()[valid])
            cb = self.codebook_vectors()
            idx = self._indices(e, cb)
            codes = idx.view(b, 1, t)
            q = lookup(idx, cb, check_range=False)  # a learned codebook's gradient: the embedding backward
            loss = self.commitment_weight * masked_mse(e, q.detach(), valid)
            if not self.uses_ema:
                loss = loss + self.codebook_weight * masked_mse(q, e.detach(), valid)
            counts = code_histogram(idx, self.codebook_size, valid)
            if self.training:
                q = q.detach()
                if self.rotation_trick:
                    z_q = unproject_frames(self.project_out, rotate_to(e, q), b, t)
                elif isinstance(self.project_out, nn.Identity):
                    z_q = straight_through(e, q, b, t)
                else:
                    z_q = unproject_frames(self.project_out, e + (q - e).detach(), b, t)
                restarts = self._balance(e.detach(), idx, valid)
            else:
                z_q = self._decode_indices(idx, b, t)
                restarts = 0
            metrics = usage_metrics(counts[None])
            metrics["dead_codes"] = (self.ema_count < self.dead_code_threshold).sum().float().reshape(1)
            metrics["restarts"] = torch.full((1,), float(restarts), device=z.device)
        return QuantizerOutput(z_q=z_q, codes=codes, loss=loss, metrics=metrics)

    # ------------------------------------------------------------------------------------------------------
    # Balancing (training only; all statistics from valid frames, synchronised across ranks).

    @torch.no_grad()
    def _kmeans_init(self, x: Tensor) -> None:
        n = torch.tensor([float(x.shape[0])], device=x.device)
        balancing.all_reduce_(n)
        if n.item() == 0:
            return
        centroids, counts = balancing.kmeans(x, self.codebook_size, self.kmeans_iters, self.metric)
        self.codebook.data.copy_(centroids)
        self.ema_count.copy_(counts)
        if self.ema_sum is not None:
            self.ema_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _balance(self, e: Tensor, idx: Tensor, valid: Tensor | None) -> int:
        """EMA update and dead-code restart; returns the number of codes restarted (the same on every rank)."""
        if valid is not None:
            e, idx = e[valid], idx[valid]
        decay = self.ema_decay if self.ema_decay is not None else USAGE_DECAY
        if balancing.ema_update_(self.ema_count, self.ema_sum, idx, e, decay) == 0:
            return 0  # no valid frame on any rank: nothing to learn from, nothing decays
        if self.ema_sum is not None:
            self.codebook.copy_(balancing.ema_codebook(self.ema_count, self.ema_sum, self._row_metric))
        return balancing.replace_dead_codes_(
            self.codebook.data, self.ema_count, self.ema_sum, e, self.dead_code_threshold, self._row_metric
        )

    @property
    def _row_metric(self) -> str:
        # How codebook rows are stored: unit vectors for a normalised cosine codebook, raw otherwise.
        return "cosine" if self.normalized else "l2"

    def extra_repr(self) -> str:
        kind = f"ema_decay={self.ema_decay}" if self.uses_ema else "learned"
        raw = ", raw_lookup=True" if self.raw_lookup else ""
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}, "
            f"metric={self.metric}{raw}, {kind}, dead_code_threshold={self.dead_code_threshold}"
        )
