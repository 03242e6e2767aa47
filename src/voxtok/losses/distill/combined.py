"""DM-Codec's combined mode: SSL and LM distillation on the same latents, weighted with ``FixedWeights``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from voxtok.losses.balancer import FixedWeights
from voxtok.losses.distill.lm import LMDistillation
from voxtok.losses.distill.ssl import SSLDistillation

__all__ = ["CombinedDistillation"]


class CombinedDistillation(nn.Module):
    """DM-Codec's combined mode: ``ssl_weight * SSL loss + lm_weight * LM loss``.

    ``losses(...)`` returns both terms (for logging); ``forward`` combines them with the losses' ordinary weighting
    (``voxtok.losses.FixedWeights``, whose ``weights`` holds them as ``{"ssl": ..., "lm": ...}``).
    """

    def __init__(
        self, ssl: SSLDistillation, lm: LMDistillation, ssl_weight: float = 1.0, lm_weight: float = 1.0
    ) -> None:
        super().__init__()
        if ssl.student_dim != lm.student_dim:
            raise ValueError(f"SSL and LM parts distil different latent widths ({ssl.student_dim} vs {lm.student_dim})")
        self.ssl, self.lm = ssl, lm
        self.weights = FixedWeights({"ssl": ssl_weight, "lm": lm_weight})

    @property
    def ssl_weight(self) -> float:
        return self.weights.weights["ssl"]

    @property
    def lm_weight(self) -> float:
        return self.weights.weights["lm"]

    def losses(
        self,
        latents: Tensor,
        audio: Tensor | None,
        transcripts: Sequence[str | None],
        *,
        mask: Tensor | None = None,
        audio_lengths: Tensor | None = None,
        teacher_features: Tensor | None = None,
        teacher_lengths: Tensor | None = None,
        alignments: Sequence[Tensor | None] | None = None,
    ) -> dict[str, Tensor]:
        """Both terms, unweighted: ``{"ssl": ..., "lm": ...}``; arguments as in ``SSLDistillation`` and
        ``LMDistillation``."""
        return {
            "ssl": self.ssl(
                latents,
                audio,
                mask=mask,
                audio_lengths=audio_lengths,
                teacher_features=teacher_features,
                teacher_lengths=teacher_lengths,
            ),
            "lm": self.lm(latents, transcripts, mask=mask, alignments=alignments),
        }

    def forward(
        self, latents: Tensor, audio: Tensor | None, transcripts: Sequence[str | None], **inputs: Any
    ) -> Tensor:
        """The weighted sum of ``losses(latents, audio, transcripts, **inputs)`` (same keyword arguments)."""
        return self.weights.combine(self.losses(latents, audio, transcripts, **inputs))
