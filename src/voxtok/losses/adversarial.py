"""GAN losses over any set of discriminators, and feature matching.

Every voxtok discriminator returns ``(logits, features)``: ``logits`` is a list with one tensor per
sub-discriminator (any shape), ``features`` a list with, per sub-discriminator, the list of its intermediate
feature maps. The losses here take those lists, so they work with one discriminator or with several
concatenated (``logits_mpd + logits_mrd``), and never need the discriminator classes.

Sub-discriminator losses are summed by default, as in HiFi-GAN, DAC, Vocos and WavTokenizer;
``reduction="mean"`` averages them instead, as EnCodec does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "AdversarialLoss",
    "FeatureMatchingLoss",
    "discriminator_loss",
    "generator_loss",
]

GanKind = Literal["hinge", "lsgan"]
Reduction = Literal["sum", "mean"]


def _check(kind: str, reduction: str) -> None:
    if kind not in ("hinge", "lsgan"):
        raise ValueError(f"kind must be 'hinge' or 'lsgan'; got {kind!r}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")


def _reduce(terms: list[Tensor], reduction: str) -> Tensor:
    if not terms:
        raise ValueError("got an empty list of discriminator outputs; expected one tensor per sub-discriminator")
    total = torch.stack(terms).sum()
    return total / len(terms) if reduction == "mean" else total


def discriminator_loss(
    real_logits: Sequence[Tensor],
    fake_logits: Sequence[Tensor],
    kind: GanKind = "hinge",
    reduction: Reduction = "sum",
) -> Tensor:
    """Discriminator loss over sub-discriminators; pass ``fake_logits`` computed on detached fakes.

    hinge (MelGAN, EnCodec): ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``.
    lsgan (HiFi-GAN, DAC): ``mean((1 - D(x))^2) + mean(D(G(z))^2)``.
    """
    _check(kind, reduction)
    if len(real_logits) != len(fake_logits):
        raise ValueError(
            f"real and fake logits need one entry per sub-discriminator; got {len(real_logits)} and {len(fake_logits)}"
        )
    terms = []
    for real, fake in zip(real_logits, fake_logits, strict=True):
        if kind == "hinge":
            terms.append(torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())
        else:
            terms.append((1 - real).pow(2).mean() + fake.pow(2).mean())
    return _reduce(terms, reduction)


def generator_loss(fake_logits: Sequence[Tensor], kind: GanKind = "hinge", reduction: Reduction = "sum") -> Tensor:
    """Generator (adversarial) loss over sub-discriminators.

    hinge: ``mean(relu(1 - D(G(z))))`` (EnCodec's generator loss; 0 once every score passes the margin).
    lsgan: ``mean((1 - D(G(z)))^2)``.
    """
    _check(kind, reduction)
    if kind == "hinge":
        terms = [torch.relu(1 - fake).mean() for fake in fake_logits]
    else:
        terms = [(1 - fake).pow(2).mean() for fake in fake_logits]
    return _reduce(terms, reduction)


class AdversarialLoss(nn.Module):
    """Both sides of a GAN objective with one setting of ``kind`` and ``reduction``.

    ``loss.generator(fake_logits)`` for the codec step; ``loss.discriminator(real_logits, fake_logits)`` for the
    discriminator step (on discriminator outputs for detached fakes). ``forward`` is ``generator``.
    """

    def __init__(self, kind: GanKind = "hinge", reduction: Reduction = "sum") -> None:
        super().__init__()
        _check(kind, reduction)
        self.kind: GanKind = kind
        self.reduction: Reduction = reduction

    def generator(self, fake_logits: Sequence[Tensor]) -> Tensor:
        return generator_loss(fake_logits, self.kind, self.reduction)

    def discriminator(self, real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
        return discriminator_loss(real_logits, fake_logits, self.kind, self.reduction)

    def forward(self, fake_logits: Sequence[Tensor]) -> Tensor:
        return self.generator(fake_logits)


class FeatureMatchingLoss(nn.Module):
    """L1 between the discriminator feature maps of real and generated audio (MelGAN).

    Real features are detached: this loss trains the generator only. Per feature map the term is
    ``mean |f_real - f_fake|`` (absolute, HiFi-GAN / DAC) or that divided by ``mean |f_real|`` (relative,
    EnCodec, which makes layers of different scale count alike). Terms are averaged over the feature maps of
    each sub-discriminator, then summed (or averaged, ``reduction="mean"``) over sub-discriminators.

    Args:
        relative: divide each map's L1 by the mean magnitude of its real features.
        reduction: how sub-discriminators are combined.
        eps: floor of the relative denominator (silent real features).
    """

    def __init__(self, relative: bool = False, reduction: Reduction = "sum", eps: float = 1e-8) -> None:
        super().__init__()
        _check("hinge", reduction)
        self.relative = bool(relative)
        self.reduction: Reduction = reduction
        self.eps = float(eps)

    def forward(self, real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]) -> Tensor:
        """``real_features[i][j]`` / ``fake_features[i][j]``: feature map j of sub-discriminator i."""
        if len(real_features) != len(fake_features):
            raise ValueError(
                f"real and fake features need one entry per sub-discriminator; got {len(real_features)} and "
                f"{len(fake_features)}"
            )
        terms = []
        for i, (reals, fakes) in enumerate(zip(real_features, fake_features, strict=True)):
            if len(reals) != len(fakes) or not reals:
                raise ValueError(
                    f"sub-discriminator {i}: got {len(reals)} real and {len(fakes)} fake feature maps; expected the "
                    "same non-zero number"
                )
            maps = []
            for j, (real, fake) in enumerate(zip(reals, fakes, strict=True)):
                if real.shape != fake.shape:
                    raise ValueError(
                        f"sub-discriminator {i}, feature map {j}: real {tuple(real.shape)} and fake "
                        f"{tuple(fake.shape)} differ; feed real and generated audio of the same length"
                    )
                real = real.detach()
                term = (real - fake).abs().mean()
                if self.relative:
                    term = term / real.abs().mean().clamp(min=self.eps)
                maps.append(term)
            terms.append(torch.stack(maps).mean())
        return _reduce(terms, self.reduction)
