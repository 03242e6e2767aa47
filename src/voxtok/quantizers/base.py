"""The ``Quantizer`` contract and the helpers every quantizer family shares (checks, frame layout, metrics)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.hparams import RecordsHParams
from voxtok.types import QuantizerOutput

__all__ = ["Quantizer", "QuantizerOutput"]


class Quantizer(RecordsHParams, nn.Module, ABC):
    """Maps latents ``[B, D, T]`` to integer codes ``[B, Q, T]`` and back.

    Every family (VQ, RVQ, FSQ, identity) follows this contract, so codecs never special-case the quantizer:

    - ``forward(z [B, D, T], mask [B, T] | None) -> QuantizerOutput`` (training: straight-through ``z_q``,
      losses, balancing; eval: ``z_q`` goes through ``decode``, so ``decode(encode(z)) == forward(z).z_q``
      bit for bit). ``mask`` is True on valid frames; padded frames never reach statistics, losses or metrics.
    - ``encode(z, n_q) -> codes [B, n_q, T]`` int64 (``n_q`` defaults to all codebooks; residual quantizers
      accept any prefix).
    - ``decode(codes [B, Q', T]) -> z_q [B, D, T]`` for any prefix ``Q' <= Q``.

    Validation happens once, in the public ``forward`` / ``encode`` / ``decode``; they call ``_forward`` /
    ``_encode`` / ``_decode`` on checked input, and so do composite quantizers on their stages, so a check costs one
    pass whatever the number of stages.

    Every quantizer records its constructor arguments (``hparams``; ``voxtok.hparams``), so a codec holding one can
    save it however it was built.

    Attributes:
        dim: input / output feature dim ``D``.
        num_codebooks: ``Q``.
        codebook_size: ``K`` per codebook (the largest one when stages differ; see ``codebook_sizes``).
    """

    dim: int
    num_codebooks: int
    codebook_size: int
    #: True when ``encode`` / ``decode`` accept a prefix of the codebooks (residual quantizers).
    accepts_prefix: bool = False

    @property
    def codebook_sizes(self) -> list[int]:
        """``K`` of every codebook, in code order (``[B, Q, T]`` row ``q`` takes values in ``[0, K_q)``)."""
        return [self.codebook_size] * self.num_codebooks

    def forward(self, z: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantize latents ``z [B, D, T]``; ``mask [B, T]`` (True = valid frame) or None for no padding."""
        check_latents(z, self.dim)
        return self._forward(z, check_mask(mask, z))

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        """Latents ``[B, D, T]`` -> codes ``[B, n_q, T]`` int64 (``n_q`` None = all codebooks)."""
        check_latents(z, self.dim)
        name = type(self).__name__
        if self.accepts_prefix:
            n = check_n_q(n_q, self.num_codebooks, name)
        elif n_q is not None and n_q != self.num_codebooks:
            raise ValueError(f"{name}: n_q must be None or {self.num_codebooks} (no residual stages); got {n_q!r}")
        else:
            n = self.num_codebooks
        with torch.no_grad():
            return self._encode(z, n)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes ``[B, Q', T]`` -> latents ``[B, D, T]`` float32 (residual quantizers: any prefix ``Q'``)."""
        sizes = self.codebook_sizes
        check_codes(codes, sizes, type(self).__name__)
        if not self.accepts_prefix and codes.shape[1] != len(sizes):
            raise ValueError(
                f"{type(self).__name__}.decode takes all {len(sizes)} codebooks; got {codes.shape[1]} "
                f"(dim 1 of [B, Q, T] = {tuple(codes.shape)})"
            )
        return self._decode(codes.long())

    # Subclasses implement these on checked inputs (``mask`` already bool or None, ``n`` resolved).
    @abstractmethod
    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput: ...

    @abstractmethod
    def _encode(self, z: Tensor, n: int) -> Tensor: ...

    @abstractmethod
    def _decode(self, codes: Tensor) -> Tensor: ...


# ----------------------------------------------------------------------------------------------------------
# Input checks: each names the bad value and what was expected.


def check_latents(z: Tensor, dim: int, name: str = "z") -> None:
    """``z`` must be a finite floating ``[B, dim, T]`` tensor."""
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [B, {dim}, T]; got {type(z).__name__}")
    if z.dim() != 3:
        raise ValueError(f"{name} must be [B, D, T] with D = {dim}; got rank {z.dim()} shape {tuple(z.shape)}")
    if z.shape[1] != dim:
        raise ValueError(f"{name} must have D = {dim} features on dim 1 ([B, D, T]); got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be floating point; got {z.dtype}")
    # One reduction instead of a [B, D, T] bool mask: a NaN or Inf anywhere makes the sum non-finite. Only
    # then (or on overflow of huge finite values) is the element-wise check run, to name the culprit.
    if bool(torch.isfinite(z.sum(dtype=torch.float32))):
        return
    finite = torch.isfinite(z)
    if not bool(finite.all()):
        b, d, t = (int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"{name} must be finite; got {z[b, d, t].item()} at [batch {b}, feature {d}, frame {t}] "
            f"({int((~finite).sum())} non-finite values)"
        )


def check_mask(mask: Tensor | None, z: Tensor) -> Tensor | None:
    """``mask`` must be ``[B, T]`` (True = valid); returns it as bool, or None."""
    if mask is None:
        return None
    b, _, t = z.shape
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [B, T] = [{b}, {t}] (True = valid frame); got shape {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_floating_point():
            raise ValueError(f"mask must be bool or integer 0/1 (True = valid frame); got {mask.dtype}")
        mask = mask != 0
    return mask.to(z.device)


def check_codes(codes: Tensor, sizes: Sequence[int], owner: str) -> None:
    """``codes`` must be integer ``[B, Q', T]`` with ``Q' <= len(sizes)`` and row ``q`` in ``[0, sizes[q])``."""
    if not isinstance(codes, Tensor):
        raise ValueError(f"{owner}.decode takes codes as an int64 tensor [B, Q, T]; got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"{owner}.decode takes integer codes (int64); got dtype {codes.dtype}")
    if codes.dim() != 3:
        raise ValueError(f"{owner}.decode takes codes [B, Q, T]; got rank {codes.dim()} shape {tuple(codes.shape)}")
    q = codes.shape[1]
    if q > len(sizes) or (q == 0 and len(sizes) > 0):
        raise ValueError(f"{owner}.decode takes 1 to {len(sizes)} codebooks (dim 1 of [B, Q, T]); got {q}")
    if codes.numel() == 0:
        return
    lo = codes.amin(dim=(0, 2)).tolist()
    hi = codes.amax(dim=(0, 2)).tolist()
    for i in range(q):
        if lo[i] < 0 or hi[i] >= sizes[i]:
            bad = lo[i] if lo[i] < 0 else hi[i]
            raise ValueError(f"{owner}: codes must be in [0, {sizes[i]}) in codebook {i}; got {bad}")


def check_n_q(n_q: int | None, stages: int, owner: str) -> int:
    """``n_q`` (None = all) must be in ``[1, stages]``; returns the resolved count."""
    if n_q is None:
        return stages
    if isinstance(n_q, bool) or not isinstance(n_q, int) or not 1 <= n_q <= stages:
        raise ValueError(f"{owner}: n_q must be an int in [1, {stages}] (number of stages); got {n_q!r}")
    return n_q


# ----------------------------------------------------------------------------------------------------------
# Layout and numerics.


@contextlib.contextmanager
def fp32(device: torch.device) -> Iterator[None]:
    """Autocast off: quantization runs in float32 whatever the surrounding precision (code indices and
    distances in bf16 lose codes; see vector-quantize-pytorch issue #114)."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def to_frames(z: Tensor) -> Tensor:
    """``[B, D, T]`` -> ``[B * T, D]`` float32 frames (row ``b * T + t``)."""
    return z.float().transpose(1, 2).reshape(-1, z.shape[1])


def from_frames(x: Tensor, batch: int, frames: int) -> Tensor:
    """``[B * T, D]`` -> ``[B, D, T]`` contiguous."""
    return x.reshape(batch, frames, x.shape[-1]).transpose(1, 2).contiguous()


def project_frames(proj: nn.Module, z: Tensor) -> Tensor:
    """``z [B, D, T]`` -> ``[B * T, C]`` float32 frames through ``proj`` (a ``Linear(D, C)`` or ``Identity``).

    The projection is applied in the ``[B, D, T]`` layout, so only the (usually much smaller) projected
    tensor is transposed into frames.
    """
    if isinstance(proj, nn.Linear):
        y = torch.matmul(proj.weight, z.float()) + proj.bias[:, None]  # [B, C, T]
        return to_frames(y)
    return to_frames(z)


def unproject_frames(proj: nn.Module, y: Tensor, batch: int, frames: int) -> Tensor:
    """``[B * T, C]`` frames -> ``[B, D, T]`` through ``proj`` (``Linear(C, D)`` or ``Identity``), transposing
    only the small side."""
    y = y.reshape(batch, frames, y.shape[-1]).transpose(1, 2)
    if isinstance(proj, nn.Linear):
        # One fused multiply-add, no separate bias pass over the [B, D, T] output.
        d = proj.weight.shape[0]
        bias = proj.bias[None, :, None].expand(batch, d, frames)
        return torch.baddbmm(bias, proj.weight.expand(batch, -1, -1), y)
    return y.contiguous()


class _StraightThrough(torch.autograd.Function):
    """Value of ``q`` laid out as ``[B, D, T]``, gradient passed unchanged to ``e`` (``[B * T, D]``): the
    straight-through estimator ``e + sg(q - e)`` without its two full-size temporaries."""

    @staticmethod
    def forward(ctx, e: Tensor, q: Tensor, batch: int, frames: int) -> Tensor:  # type: ignore[override]
        return from_frames(q, batch, frames)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        return to_frames(grad), None, None, None


def straight_through(e: Tensor, q: Tensor, batch: int, frames: int) -> Tensor:
    """``[B, D, T]`` with the value of ``q [B * T, D]`` and the gradient of identity to ``e [B * T, D]``."""
    return _StraightThrough.apply(e, q.detach(), batch, frames)


def masked_mse(a: Tensor, b: Tensor, valid: Tensor | None) -> Tensor:
    """Mean squared error over valid rows of ``[N, D]`` tensors (0 when no row is valid).

    ``F.mse_loss`` keeps one ``[N, D]`` temporary (``(a - b) ** 2`` keeps two); masked rows are weighted
    out rather than gathered, which would copy both inputs.
    """
    if valid is None:
        return F.mse_loss(a, b) if a.numel() else a.new_zeros(())
    n = int(valid.sum())
    if n == 0:
        return a.new_zeros(())
    per_row = F.mse_loss(a, b, reduction="none").sum(-1)
    return (per_row * valid).sum() / (n * a.shape[-1])


def code_histogram(indices: Tensor, size: int, valid: Tensor | None = None) -> Tensor:
    """Counts ``[size]`` (float32) of ``indices [N]`` over valid rows."""
    if valid is not None:
        indices = indices[valid]
    return torch.bincount(indices, minlength=size).float()


def usage_metrics(counts: Tensor) -> dict[str, Tensor]:
    """Perplexity (``exp`` of the code entropy) and the fraction of codes used, from counts ``[Q, K]``.

    Both are ``[Q]``; a codebook that saw no valid frame has perplexity 0 and usage 0.
    """
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    perplexity = torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))
    usage = (counts > 0).float().mean(-1)
    return {"perplexity": perplexity, "usage": usage}


def concat_metrics(parts: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Per-codebook metrics of several stages, concatenated along the codebook axis in stage order."""
    keys = [k for k in parts[0] if all(k in p for p in parts)] if parts else []
    return {k: torch.cat([p[k].reshape(-1) for p in parts]) for k in keys}


def dropout_keep(batch: int, stages: int, p: float, device: torch.device) -> Tensor | None:
    """Quantizer dropout (SoundStream / DAC): with probability ``p`` an item keeps only a random prefix of
    ``1..stages`` stages, so every prefix is trained. Returns ``[B, stages]`` bool keep flags, or None."""
    if p <= 0.0 or stages <= 1:
        return None
    n = torch.full((batch,), stages, device=device)
    drop = torch.rand(batch, device=device) < p
    n = torch.where(drop, torch.randint(1, stages + 1, (batch,), device=device), n)
    return torch.arange(stages, device=device)[None, :] < n[:, None]
