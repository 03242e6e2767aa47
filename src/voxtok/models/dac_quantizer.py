"""DAC's factorised residual VQ, as descript-audio-codec trains and decodes it.

``ResidualVectorQuantizer(metric="cosine")`` searches and looks up l2-normalised codes. DAC searches the same
way (l2-normalised projected latents against l2-normalised codes, "improved VQGAN"), but its commitment and
codebook losses and its decoding use the *raw* codebook rows and the raw projected latents: the decoder sees
``out_proj(codebook[i])``, whose scale the normalised lookup loses. DAC's published weights only decode
correctly with the raw lookup, so converted DAC checkpoints use this variant (``DACResidualVectorQuantizer``);
everything else (projections, prefixes, dropout, metrics, the RVQ contract) is ``ResidualVectorQuantizer``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from voxtok.kernels import lookup, nearest
from voxtok.quantizers.base import code_histogram, fp32, masked_mse, project_frames, unproject_frames, usage_metrics
from voxtok.quantizers.rvq import ResidualVectorQuantizer
from voxtok.quantizers.vq import VectorQuantizer
from voxtok.types import QuantizerOutput

__all__ = ["DACResidualVectorQuantizer", "DACVectorQuantizer"]


class DACVectorQuantizer(VectorQuantizer):
    """One DAC codebook: cosine search, raw-codebook lookup, learned codebook (no EMA, no k-means).

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        codebook_size: ``K``. codebook_dim: the low-dimensional code space (DAC: 8).
        commitment_weight, codebook_weight: weights of ``|e - sg(q)|^2`` and ``|sg(e) - q|^2`` (DAC: 0.25, 1).
    """

    def __init__(
        self, dim: int, codebook_size: int, codebook_dim: int, commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__(
            dim, codebook_size, codebook_dim=codebook_dim, metric="cosine", ema_decay=None,
            commitment_weight=commitment_weight, codebook_weight=codebook_weight, kmeans_init=False,
            dead_code_threshold=0.0,
        )  # fmt: skip
        with torch.no_grad():  # DAC initialises its nn.Embedding with N(0, 1), unnormalised
            self.codebook.normal_()

    def _raw(self, z: Tensor) -> Tensor:
        """``[B, D, T]`` -> raw projected frames ``[B * T, codebook_dim]`` (float32)."""
        return project_frames(self.project_in, z)

    def _search(self, e: Tensor) -> Tensor:
        idx, _ = nearest(e.detach(), self.codebook.detach().float(), metric="cosine")
        return idx

    def _decode_indices(self, idx: Tensor, batch: int, frames: int) -> Tensor:
        return unproject_frames(self.project_out, lookup(idx, self.codebook.float()), batch, frames)

    def _encode(self, z: Tensor, n: int) -> Tensor:
        b, _, t = z.shape
        with fp32(z.device):
            return self._search(self._raw(z)).view(b, 1, t)

    def _forward(self, z: Tensor, mask: Tensor | None) -> QuantizerOutput:
        b, _, t = z.shape
        with fp32(z.device):
            e = self._raw(z)
            valid = None if mask is None else mask.reshape(-1)
            idx = self._search(e)
            q = lookup(idx, self.codebook.float())
            loss = self.commitment_weight * masked_mse(e, q.detach(), valid)
            loss = loss + self.codebook_weight * masked_mse(q, e.detach(), valid)
            counts = code_histogram(idx, self.codebook_size, valid)
            if self.training:
                z_q = unproject_frames(self.project_out, e + (q - e).detach(), b, t)
                with torch.no_grad():  # usage counts only: threshold 0 never restarts a code
                    self._balance(e.detach(), idx, valid)
            else:
                z_q = self._decode_indices(idx, b, t)
            metrics = usage_metrics(counts[None])
            metrics["dead_codes"] = (self.ema_count < 1e-3).sum().float().reshape(1)
        return QuantizerOutput(z_q=z_q, codes=idx.view(b, 1, t), loss=loss, metrics=metrics)


class DACResidualVectorQuantizer(ResidualVectorQuantizer):
    """DAC's residual VQ: ``num_quantizers`` ``DACVectorQuantizer`` stages with quantizer dropout.

    Args:
        dim: feature dim ``D`` of the latents ``[B, D, T]``.
        num_quantizers: stages ``Q``. codebook_size: ``K`` (int or one per stage). codebook_dim: code-space dim.
        quantizer_dropout: probability that an item trains a random prefix of stages (DAC: 0.5 in training).
        commitment_weight, codebook_weight: see ``DACVectorQuantizer``.
    """

    def __init__(
        self, dim: int, num_quantizers: int, codebook_size: int | Sequence[int], codebook_dim: int = 8,
        quantizer_dropout: float = 0.0, commitment_weight: float = 0.25, codebook_weight: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__(
            dim, num_quantizers, codebook_size, codebook_dim=codebook_dim, quantizer_dropout=quantizer_dropout,
            metric="cosine", ema_decay=None, commitment_weight=commitment_weight, codebook_weight=codebook_weight,
            kmeans_init=False, dead_code_threshold=0.0,
        )  # fmt: skip
        self.stages = torch.nn.ModuleList(
            DACVectorQuantizer(dim, k, codebook_dim, commitment_weight, codebook_weight) for k in self.codebook_sizes
        )


