"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple") and its
residual form (ResidualFSQ, as in X-codec2-style and multi-scale codecs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from voxtok.hparams import NamedConfigs
from voxtok.quantizers.base import (
    Quantizer,
    code_histogram,
    dropout_keep,
    fp32,
    project_frames,
    unproject_frames,
    usage_metrics,
)
from voxtok.types import QuantizerOutput

__all__ = ["FiniteScalarQuantizer", "ResidualFSQ"]

# Widens the tanh bound a little so the extreme levels are reachable (the FSQ paper's reference code).
_BOUND_EPS = 1e-3


def _check_levels(levels: Sequence[int], owner: str) -> list[int]:
    try:
        out = [int(v) for v in levels]
    except TypeError:
        raise ValueError(f"{owner}: levels must be a sequence of ints >= 2; got {levels!r}") from None
    if not out:
        raise ValueError(f"{owner}: levels must have at least one entry (ints >= 2); got {list(levels)}")
    for i, (v, raw) in enumerate(zip(out, levels, strict=True)):
        if v != raw or isinstance(raw, bool) or v < 2:
            raise ValueError(f"{owner}: levels must be ints >= 2; got {raw!r} at position {i} of {list(levels)}")
    return out


class _Grid(nn.Module):
    """The scalar grid of one FSQ codebook group: bound, round, index <-> value. All derived constants are
    non-persistent buffers (nothing to save: the grid follows from ``levels``)."""

    def __init__(self, levels: list[int]) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.int64)
        half_l = (lv.double() - 1.0) * (1.0 + _BOUND_EPS) / 2.0
        offset = torch.where(lv % 2 == 0, 0.5, 0.0).double()
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False)
        self.register_buffer("half_width", (lv // 2).float(), persistent=False)
        self.register_buffer("half_l", half_l.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_l).float(), persistent=False)
        self.size = math.prod(levels)

    def bound(self, x: Tensor) -> Tensor:
        """``[..., C]`` -> values in ``(-L/2, L/2)`` per dim (for even ``L`` shifted so rounding hits ``L``
        integers)."""
        return torch.tanh(x + self.shift) * self.half_l - self.offset

    def round_ste(self, bounded: Tensor) -> Tensor:
        """Integer grid points (straight-through), clamped so a rounding tie never leaves the grid."""
        hw = self.half_width
        r = torch.minimum(torch.maximum(torch.round(bounded), -hw), self.levels.float() - 1.0 - hw)
        return bounded + (r - bounded).detach()

    def to_indices(self, grid: Tensor) -> Tensor:
        """Integer grid points ``[..., C]`` (float) -> indices ``[...]`` int64, computed in int64."""
        digits = (grid.detach().round().long() + self.half_width.long()).clamp_min(0)
        return (digits * self.basis).sum(-1)

    def from_indices(self, idx: Tensor) -> Tensor:
        """Indices ``[...]`` -> normalised code values ``[..., C]`` in ``[-1, 1]`` (float32)."""
        digits = (idx[..., None] // self.basis) % self.levels
        return (digits.float() - self.half_width) / self.half_width

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [..., C]`` -> (normalised straight-through values ``[..., C]``, indices ``[...]``)."""
        grid = self.round_ste(self.bound(x))
        return grid / self.half_width, self.to_indices(grid)


class FiniteScalarQuantizer(NamedConfigs, Quantizer):
    """Bounded rounding onto a fixed grid: an implicit codebook of ``prod(levels)`` codes per codebook, no
    codebook to learn, no loss, no collapse.

    ``dim`` is projected to ``len(levels) * num_codebooks`` and back when they differ. Indices are computed
    from float32 values with autocast off and combined in int64, so a bf16 input gives exactly the indices of
    the same values in float32 (vector-quantize-pytorch #114 loses half the codes there).

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        levels: grid size per code dim, each ``>= 2`` (FSQ paper: ``[8, 5, 5, 5]`` for 1000 codes,
            ``[8, 8, 8, 6, 5]`` for 15360, ``[4] * 8`` for 65536 as in X-codec2).
        num_codebooks: independent groups of ``len(levels)`` dims, one code row each.
        bound_input: bound the projected latents once before the grid's own bound (X-codec2's ``ResidualFSQ``
            does, and its published weights were trained so: the codes depend on it). Decoding is unchanged.

    Named configurations (``CONFIGS``; pass ``dim``): ``"xcodec2"`` (4^8 = 65536 codes, double bound).
    """

    config_family = "FiniteScalarQuantizer"
    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        "xcodec2": {"levels": [4] * 8, "bound_input": True},
    }

    def __init__(self, dim: int, levels: Sequence[int], num_codebooks: int = 1, bound_input: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("dim", dim), ("num_codebooks", num_codebooks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int; got {value!r}")
        self.level_list = _check_levels(levels, name)
        self.dim = dim
        self.num_codebooks = num_codebooks
        self.grid = _Grid(self.level_list)
        self.codebook_size = self.grid.size
        self.code_dim = len(self.level_list) * num_codebooks
        self.bound_input = bool(bound_input)
        self.project_in: nn.Module = nn.Linear(dim, self.code_dim) if dim != self.code_dim else nn.Identity()
        self.project_out: nn.Module = nn.Linear(self.code_dim, dim) if dim != self.code_dim else nn.Identity()

    def index_to_code(self, indices: Tensor) -> Tensor:
        """Indices ``[...]`` in ``[0, prod(levels))`` -> grid codes ``[..., len(levels)]`` in ``[-1, 1]``."""
        return self.grid.from_indices(indices.long())

    def code_to_index(self, codes: Tensor) -> Tensor:
        """Grid codes ``[..., len(levels)]`` (as ``index_to_code`` gives) -> indices ``[...]`` int64."""
        return self.grid.to_indices(codes.float() * self.grid.half_width)

    def _frames(self, z: Tensor) -> Tensor:
        """``[B, D, T]`` -> ``[B * T, G, len(levels)]`` float32 code-space frames."""
        e = project_frames(self.project_in, z)
        e = e.view(e.shape[0], self.num_codebooks, len(self.level_list))
        return self.grid.bound(e) if self.bound_input else e

    def _encode(self, z: Tensor, n: int) -> Tensor:
        b, _, t = z.shape
        with fp32(z.device):
            _, idx = self.grid.quantize(self._frames(z))
        return idx.view(b, t, self.num_codebooks).transpose(1, 2).contiguous()

    def _decode(self, codes: Tensor) -> Tensor:
        b, _, t = codes.shape
        with fp32(codes.device):
            values = self.grid.from_indices(codes.transpose(1, 2).reshape(b * t, self.num_codebooks))
            return unproject_frames(self.project_out, values.reshape(b * t, self.code_dim), b, t)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        b, _, t = z.shape
        with fp32(z.device):
            if self.training:
                q, idx = self.grid.quantize(self._frames(z))
                codes = idx.view(b, t, self.num_codebooks).transpose(1, 2).contiguous()
                z_q = unproject_frames(self.project_out, q.reshape(b * t, self.code_dim), b, t)
            else:
                codes = self._encode(z, self.num_codebooks)
                z_q = self._decode(codes)
            valid = None if mask is None else mask.reshape(-1)
            flat = codes.transpose(1, 2).reshape(b * t, self.num_codebooks)
            counts = torch.stack(
                [code_histogram(flat[:, g], self.codebook_size, valid) for g in range(self.num_codebooks)]
            )
            metrics = usage_metrics(counts)
        return QuantizerOutput(z_q=z_q, codes=codes, loss=z_q.new_zeros(()), metrics=metrics)

    def extra_repr(self) -> str:
        bound = ", bound_input=True" if self.bound_input else ""
        return f"dim={self.dim}, levels={self.level_list}, num_codebooks={self.num_codebooks}{bound}"


class ResidualFSQ(Quantizer):
    """``num_quantizers`` FSQ stages on one set of ``levels``; stage ``i`` quantizes the residual of the
    stages before it, scaled up by ``(levels - 1) ** i`` so each stage's grid covers the previous stage's
    rounding error. One projection in and out around all stages (when ``dim != len(levels)``).

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        levels: grid size per code dim, each ``>= 2``.
        num_quantizers: stages ``Q``; ``encode`` / ``decode`` accept any prefix.
        quantizer_dropout: probability that a batch item trains only a random prefix of the stages.
    """

    accepts_prefix = True

    def __init__(self, dim: int, levels: Sequence[int], num_quantizers: int, quantizer_dropout: float = 0.0) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("dim", dim), ("num_quantizers", num_quantizers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int; got {value!r}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"{name}: quantizer_dropout must be in [0, 1]; got {quantizer_dropout!r}")
        self.level_list = _check_levels(levels, name)
        self.dim = dim
        self.num_codebooks = num_quantizers
        self.quantizer_dropout = float(quantizer_dropout)
        self.grid = _Grid(self.level_list)
        self.codebook_size = self.grid.size
        self.code_dim = len(self.level_list)
        self.project_in: nn.Module = nn.Linear(dim, self.code_dim) if dim != self.code_dim else nn.Identity()
        self.project_out: nn.Module = nn.Linear(self.code_dim, dim) if dim != self.code_dim else nn.Identity()
        base = torch.tensor(self.level_list, dtype=torch.float64) - 1.0
        scales = base[None, :] ** -torch.arange(num_quantizers, dtype=torch.float64)[:, None]
        self.register_buffer("scales", scales.float(), persistent=False)  # [Q, C]

    def _encode(self, z: Tensor, n: int) -> Tensor:
        b, _, t = z.shape
        with fp32(z.device):
            residual = project_frames(self.project_in, z)
            codes = []
            for i in range(n):
                _, idx = self.grid.quantize(residual / self.scales[i])
                residual = residual - self.grid.from_indices(idx) * self.scales[i]
                codes.append(idx)
        return torch.stack(codes, dim=1).view(b, t, n).transpose(1, 2).contiguous()

    def _decode(self, codes: Tensor) -> Tensor:
        b, q, t = codes.shape
        with fp32(codes.device):
            flat = codes.transpose(1, 2).reshape(b * t, q)
            out = self.grid.from_indices(flat[:, 0]) * self.scales[0]
            for i in range(1, q):
                out = out + self.grid.from_indices(flat[:, i]) * self.scales[i]
            return unproject_frames(self.project_out, out, b, t)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        b, _, t = z.shape
        n = self.num_codebooks
        valid = None if mask is None else mask.reshape(-1)
        with fp32(z.device):
            if self.training:
                keep = dropout_keep(b, n, self.quantizer_dropout, z.device)
                residual = project_frames(self.project_in, z)
                total = torch.zeros_like(residual)
                idxs, counts = [], []
                for i in range(n):
                    q, idx = self.grid.quantize(residual / self.scales[i])
                    q = q * self.scales[i]
                    stage_valid = valid
                    if keep is not None:
                        kept = keep[:, i, None].expand(b, t).reshape(-1)
                        q = q * kept[:, None]
                        stage_valid = kept if valid is None else valid & kept
                    residual = residual - q
                    total = total + q
                    idxs.append(idx)
                    counts.append(code_histogram(idx, self.codebook_size, stage_valid))
                codes = torch.stack(idxs, dim=1).view(b, t, n).transpose(1, 2).contiguous()
                z_q = unproject_frames(self.project_out, total, b, t)
            else:
                codes = self._encode(z, n)
                z_q = self._decode(codes)
                flat = codes.transpose(1, 2).reshape(b * t, n)
                counts = [code_histogram(flat[:, i], self.codebook_size, valid) for i in range(n)]
            metrics = usage_metrics(torch.stack(counts))
        return QuantizerOutput(z_q=z_q, codes=codes, loss=z_q.new_zeros(()), metrics=metrics)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={self.level_list}, num_quantizers={self.num_codebooks}"
