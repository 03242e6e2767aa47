"""What SSL and LM distillation share: the loss between student and teacher features, and the base class that holds
a frozen teacher (outside the module's parameters and state dict) and the trainable projection to its width."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.models import hf

__all__ = ["LOSS_KINDS", "Distillation", "LossKind", "check_loss_kind", "distillation_loss", "frame_mask"]

LossKind = Literal["d-axis", "t-axis", "cosine"]
LOSS_KINDS: tuple[str, ...] = ("d-axis", "t-axis", "cosine")


def check_loss_kind(kind: str) -> LossKind:
    """``kind`` if it is one of ``LOSS_KINDS``; ``ValueError`` naming the choices otherwise."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"loss must be 'd-axis', 't-axis' or 'cosine'; got {kind!r}")
    return kind  # type: ignore[return-value]


def distillation_loss(
    student: Tensor, teacher: Tensor, mask: Tensor | None = None, kind: LossKind = "d-axis"
) -> Tensor:
    """Distance between student and teacher features ``[B, T, H]``, over valid frames ``mask`` ``[B, T]``.

    - ``"d-axis"`` (SpeechTokenizer, DM-Codec): per feature dimension, the cosine similarity of the two time
      series; loss ``mean(-log sigmoid(cos))`` over dimensions and items. Padded frames are zeroed in both, so
      they add nothing to the dot products or the norms.
    - ``"t-axis"``: per frame, ``mean |s - t|`` over features plus ``-log sigmoid(cos(s, t))``; mean over frames.
    - ``"cosine"`` (Mimi): per frame ``1 - cos(s, t)``; mean over frames.
    """
    check_loss_kind(kind)
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher features must both be [B, T, H]; got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    if mask is None:
        mask = torch.ones(student.shape[:2], dtype=torch.bool, device=student.device)
    if mask.shape != student.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {list(student.shape[:2])}; got {tuple(mask.shape)}")
    m = mask.to(student.dtype)[..., None]
    if kind == "d-axis":
        cos = F.cosine_similarity(student * m, teacher * m, dim=1)  # [B, H]
        items = mask.any(dim=1)
        return -F.logsigmoid(cos[items]).mean()
    if kind == "t-axis":
        per_frame = (student - teacher).abs().mean(-1) - F.logsigmoid(F.cosine_similarity(student, teacher, dim=-1))
    else:
        per_frame = 1 - F.cosine_similarity(student, teacher, dim=-1)
    w = mask.to(per_frame.dtype)
    return (per_frame * w).sum() / w.sum().clamp(min=1)


def _projection(student_dim: int, teacher_dim: int, projection: nn.Module | None) -> nn.Module:
    if student_dim <= 0:
        raise ValueError(f"student_dim must be positive; got {student_dim}")
    if projection is None:
        return nn.Conv1d(student_dim, teacher_dim, kernel_size=1)
    try:
        with torch.no_grad():
            probe = projection(torch.zeros(1, student_dim, 2))
    except RuntimeError as e:
        raise ValueError(
            f"projection maps [1, {student_dim}, 2] nowhere: it must take [B, {student_dim}, T] latents ({e})"
        ) from e
    if probe.dim() != 3 or probe.shape[1] != teacher_dim:
        raise ValueError(
            f"projection maps [1, {student_dim}, 2] to {tuple(probe.shape)}; the teacher needs width "
            f"{teacher_dim} ([B, {teacher_dim}, T])"
        )
    return projection


class Distillation(nn.Module):
    """Base of the distillation losses: a frozen teacher and a trainable projection of the codec latents to its width.

    The teacher is frozen (eval mode, no gradients; ``voxtok.models.hf.freeze``) and held outside the module tree,
    so it neither trains nor lands in checkpoints; ``.to(device)`` still moves it.

    Args:
        teacher: the loaded teacher model.
        name: the teacher's name in feature caches.
        student_dim: codec latent width D.
        teacher_dim: the teacher width (None: its config's ``hidden_size``; checked against it when both exist).
        projection: a module ``[B, D, T] -> [B, H, T]``; default a 1x1 convolution.
        layer: hidden-state index, list of indices to average, or ``"average"`` (``voxtok.models.hf``).
        loss: ``"d-axis"``, ``"t-axis"`` or ``"cosine"`` (``distillation_loss``).
    """

    def __init__(self, teacher: nn.Module, *, name: str, student_dim: int, teacher_dim: int | None,
                 projection: nn.Module | None, layer: hf.Layer, loss: LossKind) -> None:  # fmt: skip
        super().__init__()
        # A list hides the teacher from parameters(), state_dict() and train(); _apply moves it with the module.
        self._teacher = [hf.freeze(hf.disable_augmentation(teacher))]
        self.name = name
        self.layer = hf.check_layer(layer, hf.num_hidden_states(teacher))
        self.loss_kind: LossKind = check_loss_kind(loss)
        self.student_dim = int(student_dim)
        self.teacher_dim = hf.hidden_size(teacher, teacher_dim)
        self.projection = _projection(self.student_dim, self.teacher_dim, projection)

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @property
    def layer_key(self) -> str:
        """The layer choice as a string (``"-1"``, ``"3,4"``, ``"average"``), as stored in feature caches."""
        return hf.layer_key(self.layer)

    def _apply(self, fn: Any, recurse: bool = True) -> Distillation:  # type: ignore[override]
        super()._apply(fn, recurse)
        self._teacher[0]._apply(fn)
        return self

    def project(self, latents: Tensor) -> Tensor:
        """``[B, D, T]`` -> ``[B, T, H]``."""
        if latents.dim() != 3 or latents.shape[1] != self.student_dim:
            raise ValueError(f"latents must be [B, {self.student_dim}, T]; got {tuple(latents.shape)}")
        return self.projection(latents).transpose(1, 2)


def frame_mask(mask: Tensor | None, latents: Tensor) -> Tensor:
    """``mask [B, T]`` (True = valid codec frame) checked against ``latents [B, D, T]``, as bool; all True if None."""
    b, _, t = latents.shape
    if mask is None:
        return torch.ones(b, t, dtype=torch.bool, device=latents.device)
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [B, T] = [{b}, {t}] (True = valid frame); got {tuple(mask.shape)}")
    return mask.to(device=latents.device, dtype=torch.bool)
