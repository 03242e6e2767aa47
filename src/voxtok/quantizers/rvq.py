"""Residual vector quantization (SoundStream / EnCodec / DAC) and Mimi's split RVQ.

Published variants are options of these classes, named in their ``CONFIGS`` tables: DAC's residual VQ is
``ResidualVectorQuantizer.named("dac", ...)`` (cosine search, raw-codebook lookup, learned codebooks), Mimi's is
``SplitResidualVectorQuantizer.named("mimi", ...)`` (each group projects once into a 256-wide code space, as moshi
builds it from two RVQs with input / output projections).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from voxtok.hparams import NamedConfigs
from voxtok.quantizers.base import Quantizer, check_latents, check_mask, concat_metrics, dropout_keep, fp32
from voxtok.quantizers.vq import VectorQuantizer
from voxtok.types import QuantizerOutput

__all__ = ["ResidualVectorQuantizer", "SplitResidualVectorQuantizer"]


def _sizes(codebook_size: int | Sequence[int], stages: int, owner: str) -> list[int]:
    if isinstance(codebook_size, int) and not isinstance(codebook_size, bool):
        return [codebook_size] * stages
    sizes = list(codebook_size)
    if len(sizes) != stages:
        raise ValueError(f"{owner}: codebook_size must be an int or one size per stage ({stages}); got {sizes}")
    return sizes


def _project(proj: nn.Linear | None, z: Tensor) -> Tensor:
    """A bias-free 1x1 projection of ``[B, D, T]`` (one matmul over channels in float32), or ``z`` in float32."""
    if proj is None:
        return z.float()
    return torch.einsum("oi,bit->bot", proj.weight.float(), z.float())


class ResidualVectorQuantizer(NamedConfigs, Quantizer):
    """``num_quantizers`` VQ stages; stage ``i`` quantizes what stages ``< i`` left (the residual).

    Each stage is a ``VectorQuantizer`` with its own projection when ``codebook_dim`` differs from ``dim``
    (DAC's factorised codes). With ``code_dim`` the latents are instead projected once (a bias-free linear map,
    as moshi's and Mimi's RVQ) into a ``code_dim``-wide space where the residual lives, and the quantized sum is
    projected back. Gradients pass straight through the whole stack: the residual is not detached, so
    ``d z_q / d z`` is the identity however many stages there are (DAC).

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        num_quantizers: number of stages ``Q``.
        codebook_size: ``K`` for every stage, or one ``K`` per stage.
        codebook_dim: code-space dim of every stage (None = the width the stages see: ``code_dim`` or ``dim``).
        quantizer_dropout: probability that a batch item trains only a random prefix of ``1..Q`` stages
            (SoundStream / DAC), so every prefix decodes well; the dropped stages see that item as padding.
        code_dim: project the latents once into a space of this width for all stages (None: no projection).
        metric, ema_decay, commitment_weight, codebook_weight, kmeans_init, kmeans_iters, dead_code_threshold,
        rotation_trick, raw_lookup: passed to every stage (see ``VectorQuantizer``).

    ``codebook_size`` is the largest stage size; ``codebook_sizes`` lists them all. Named configurations
    (``CONFIGS``, options only: pass ``dim``, ``num_quantizers``, ``codebook_size``): ``"dac"``.
    """

    accepts_prefix = True
    config_family = "ResidualVectorQuantizer"
    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        # descript-audio-codec: 8-dim factorised codes, l2-normalised search, raw-codebook decoding, learned
        # codebooks (no EMA, no k-means, no restarts), commitment 0.25 and codebook 1.
        "dac": {"codebook_dim": 8, "metric": "cosine", "raw_lookup": True, "ema_decay": None, "kmeans_init": False,
                "dead_code_threshold": 0.0, "commitment_weight": 0.25, "codebook_weight": 1.0},
    }  # fmt: skip

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int | Sequence[int],
        codebook_dim: int | None = None,
        quantizer_dropout: float = 0.0,
        metric: str = "l2",
        ema_decay: float | None = 0.9,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
        rotation_trick: bool = False,
        code_dim: int | None = None,
        raw_lookup: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(num_quantizers, bool) or not isinstance(num_quantizers, int) or num_quantizers < 1:
            raise ValueError(f"{name}: num_quantizers must be a positive int; got {num_quantizers!r}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"{name}: quantizer_dropout must be in [0, 1]; got {quantizer_dropout!r}")
        if code_dim is not None and (isinstance(code_dim, bool) or not isinstance(code_dim, int) or code_dim < 1):
            raise ValueError(f"{name}: code_dim must be a positive int or None; got {code_dim!r}")
        sizes = _sizes(codebook_size, num_quantizers, name)
        self.dim = dim
        self.code_dim = code_dim
        self.num_codebooks = num_quantizers
        self.codebook_size = max(sizes)
        self.quantizer_dropout = float(quantizer_dropout)
        # One projection pair around all stages (Mimi); None keeps the stages on the latents themselves.
        self.input_proj = nn.Linear(dim, code_dim, bias=False) if code_dim is not None else None
        self.output_proj = nn.Linear(code_dim, dim, bias=False) if code_dim is not None else None
        self.stages = nn.ModuleList(
            VectorQuantizer(
                dim if code_dim is None else code_dim,
                k,
                codebook_dim=codebook_dim,
                metric=metric,
                ema_decay=ema_decay,
                commitment_weight=commitment_weight,
                codebook_weight=codebook_weight,
                kmeans_init=kmeans_init,
                kmeans_iters=kmeans_iters,
                dead_code_threshold=dead_code_threshold,
                rotation_trick=rotation_trick,
                raw_lookup=raw_lookup,
            )
            for k in sizes
        )

    @property
    def codebook_sizes(self) -> list[int]:
        return [stage.codebook_size for stage in self.stages]

    def _encode(self, z: Tensor, n: int) -> Tensor:
        with fp32(z.device):
            residual = _project(self.input_proj, z)
            codes = []
            for stage in self.stages[:n]:
                c = stage._encode(residual, 1)
                residual = residual - stage._decode(c)
                codes.append(c)
        return torch.cat(codes, dim=1)

    def _decode(self, codes: Tensor) -> Tensor:
        # The one summation order that eval ``forward`` reuses, so both agree bit for bit.
        with fp32(codes.device):
            out = self.stages[0]._decode(codes[:, :1])
            for i in range(1, codes.shape[1]):
                out = out + self.stages[i]._decode(codes[:, i : i + 1])
            return out if self.output_proj is None else _project(self.output_proj, out)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        b, _, t = z.shape
        keep = dropout_keep(b, len(self.stages), self.quantizer_dropout, z.device) if self.training else None
        with fp32(z.device):
            residual = _project(self.input_proj, z)
            z_q = torch.zeros_like(residual)
            codes, losses, parts = [], [], []
            for i, stage in enumerate(self.stages):
                stage_mask = mask
                if keep is not None:
                    kept = keep[:, i : i + 1].expand(b, t)
                    stage_mask = kept if mask is None else mask & kept
                out = stage._forward(residual, stage_mask)
                q = out.z_q if keep is None else out.z_q * keep[:, i, None, None]
                residual = residual - q
                z_q = z_q + q
                codes.append(out.codes)
                losses.append(out.loss)
                parts.append(out.metrics)
            codes_t = torch.cat(codes, dim=1)
            if not self.training:
                z_q = self._decode(codes_t)
            elif self.output_proj is not None:
                z_q = _project(self.output_proj, z_q)
            loss = torch.stack(losses)
            metrics = concat_metrics(parts)
            metrics["stage_loss"] = loss.detach()
        return QuantizerOutput(z_q=z_q, codes=codes_t, loss=loss.sum(), metrics=metrics)


class SplitResidualVectorQuantizer(NamedConfigs, Quantizer):
    """Mimi's split RVQ: a semantic RVQ (``num_semantic`` stages, distilled from an SSL model) and an acoustic
    RVQ (the other stages) both quantize the same latents, and their outputs are summed.

    Codes are ``[semantic..., acoustic...]`` along ``Q``; a prefix of ``n_q`` codebooks always starts with the
    semantic ones. ``forward_parts`` gives the two outputs apart (for distillation on the semantic one);
    quantizer dropout applies to the acoustic stages only, as in Mimi.

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        num_quantizers: total stages ``Q`` (semantic + acoustic; at least ``num_semantic + 1``).
        codebook_size: ``K`` for every stage, or one per stage in code order.
        num_semantic: semantic stages (Mimi: 1).
        code_dim: each group projects the latents once into a space of this width (Mimi: 256; bias-free, one
            projection pair per group, as moshi builds it); None: no group projection.
        codebook_dim, quantizer_dropout and the ``VectorQuantizer`` settings: as ``ResidualVectorQuantizer``.

    Named configurations (``CONFIGS``, options only: pass ``dim``, ``num_quantizers``, ``codebook_size``):
    ``"mimi"`` (the layout of Mimi's published weights; the ``mimi-12.5hz`` preset projects per stage instead).
    """

    accepts_prefix = True
    config_family = "SplitResidualVectorQuantizer"
    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        "mimi": {"num_semantic": 1, "code_dim": 256},
    }

    def __init__(
        self,
        dim: int,
        num_quantizers: int,
        codebook_size: int | Sequence[int],
        num_semantic: int = 1,
        codebook_dim: int | None = None,
        quantizer_dropout: float = 0.0,
        metric: str = "l2",
        ema_decay: float | None = 0.9,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
        rotation_trick: bool = False,
        code_dim: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(num_semantic, bool) or not isinstance(num_semantic, int) or num_semantic < 1:
            raise ValueError(f"{name}: num_semantic must be a positive int; got {num_semantic!r}")
        if isinstance(num_quantizers, bool) or not isinstance(num_quantizers, int) or num_quantizers <= num_semantic:
            raise ValueError(
                f"{name}: num_quantizers must be an int > num_semantic = {num_semantic}; got {num_quantizers!r}"
            )
        sizes = _sizes(codebook_size, num_quantizers, name)
        common = dict(
            codebook_dim=codebook_dim,
            metric=metric,
            ema_decay=ema_decay,
            commitment_weight=commitment_weight,
            codebook_weight=codebook_weight,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            dead_code_threshold=dead_code_threshold,
            rotation_trick=rotation_trick,
            code_dim=code_dim,
        )
        self.dim = dim
        self.code_dim = code_dim
        self.num_codebooks = num_quantizers
        self.num_semantic = num_semantic
        self.codebook_size = max(sizes)
        self.semantic = ResidualVectorQuantizer(dim, num_semantic, sizes[:num_semantic], **common)
        self.acoustic = ResidualVectorQuantizer(
            dim, num_quantizers - num_semantic, sizes[num_semantic:], quantizer_dropout=quantizer_dropout, **common
        )

    @property
    def codebook_sizes(self) -> list[int]:
        return self.semantic.codebook_sizes + self.acoustic.codebook_sizes

    def _encode(self, z: Tensor, n: int) -> Tensor:
        s = self.num_semantic
        codes = self.semantic._encode(z, min(n, s))
        if n > s:
            codes = torch.cat([codes, self.acoustic._encode(z, n - s)], dim=1)
        return codes

    def _decode(self, codes: Tensor) -> Tensor:
        s = self.num_semantic
        out = self.semantic._decode(codes[:, :s])
        if codes.shape[1] > s:
            out = out + self.acoustic._decode(codes[:, s:])
        return out

    def forward_parts(self, z: Tensor, mask: Tensor | None = None) -> tuple[QuantizerOutput, QuantizerOutput]:
        """``(semantic, acoustic)`` outputs for ``z [B, D, T]``; ``forward`` sums them."""
        check_latents(z, self.dim)
        mask = check_mask(mask, z)
        return self.semantic._forward(z, mask), self.acoustic._forward(z, mask)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        sem, ac = self.semantic._forward(z, mask), self.acoustic._forward(z, mask)
        codes = torch.cat([sem.codes, ac.codes], dim=1)
        z_q = sem.z_q + ac.z_q if self.training else self._decode(codes)
        metrics = concat_metrics([sem.metrics, ac.metrics])
        return QuantizerOutput(z_q=z_q, codes=codes, loss=sem.loss + ac.loss, metrics=metrics)
