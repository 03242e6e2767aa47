"""Semantic distillation: pull codec latents toward a frozen speech (SSL) or text (LM) model's hidden states.

- ``base``: the loss between student and teacher features (``distillation_loss``: ``"d-axis"``, ``"t-axis"``,
  ``"cosine"``) and ``Distillation``, the base that holds a frozen teacher and the projection to its width;
- ``targets``: teacher frames onto codec frames (``align_frames``) and tokens over an utterance
  (``spread_placement``);
- ``ssl``: ``SSLDistillation`` (SpeechTokenizer, DM-Codec, Mimi);
- ``lm``: ``LMDistillation`` (DM-Codec);
- ``combined``: ``CombinedDistillation`` (DM-Codec's combined mode, weighted with ``FixedWeights``).

Teachers are loaded, frozen and read layer by layer through ``voxtok.models.hf`` (``load_teacher`` is its
``load_pretrained``): nothing is downloaded, and a teacher never trains nor lands in a checkpoint.
"""

from __future__ import annotations

from voxtok.losses.distill.base import LOSS_KINDS, Distillation, LossKind, distillation_loss
from voxtok.losses.distill.combined import CombinedDistillation
from voxtok.losses.distill.lm import LMDistillation
from voxtok.losses.distill.ssl import SSLDistillation
from voxtok.losses.distill.targets import align_frames, spread_placement
from voxtok.models.hf import load_pretrained as load_teacher

__all__ = [
    "LOSS_KINDS",
    "CombinedDistillation",
    "Distillation",
    "LMDistillation",
    "LossKind",
    "SSLDistillation",
    "align_frames",
    "distillation_loss",
    "load_teacher",
    "spread_placement",
]
