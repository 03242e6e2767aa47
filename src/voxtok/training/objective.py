"""A recipe's losses and discriminators, built by name from plain dicts (what a YAML recipe holds).

``losses`` maps a name (used in logs) to ``{"weight": w, **args}``; the loss type is the name, or ``type`` when
several losses share one (``mel_fine: {type: mel, ...}``):

| type | what | args |
|---|---|---|
| ``mel`` | ``voxtok.losses.MultiScaleMelLoss`` | its constructor's (``sample_rate`` is the codec's) |
| ``stft`` | ``MultiResolutionSTFTLoss`` (spectral convergence + log magnitude) | its constructor's |
| ``waveform`` | ``WaveformL1Loss`` | none |
| ``sisdr`` | ``SISDRLoss`` (negative SI-SDR) | ``eps`` |
| ``adversarial`` | generator GAN loss over every discriminator | ``kind`` (``hinge`` / ``lsgan``), ``reduction`` |
| ``feature_matching`` | ``FeatureMatchingLoss`` | ``relative``, ``reduction`` |
| ``quantizer`` | the quantizer's own loss (commitment, codebook) | none |
| ``ssl`` | ``SSLDistillation`` from a frozen speech model | its constructor's, ``latents``, ``cache`` |
| ``lm`` | ``LMDistillation`` from a frozen text model (batch transcripts) | its constructor's, ``latents`` |

``latents`` picks what a distillation pulls on: ``"quantized"`` (all codebooks, the default), ``"encoder"`` (before
the quantizer) or an int ``n``: the output of the first ``n`` codebooks (RVQ-1 for SpeechTokenizer / DM-Codec, the
semantic codebook for Mimi), taken straight-through: its value is ``quantizer.decode(codes[:, :n])`` and its gradient
reaches the encoder as the identity.

``discriminators`` maps a registry name (``mpd``, ``mrd``, ``msstft``, ``mbd``) to constructor args, plus three
reserved keys: ``weight`` (scales this discriminator's terms in the discriminator loss and in the adversarial and
feature-matching losses, like Vocos' ``mrd_loss_coeff``), ``kind`` (its GAN loss, overriding ``adversarial.kind``)
and ``tiny: true`` (its ``tiny()`` size, for tests).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

import voxtok.losses as L
import voxtok.models as M

__all__ = ["DISCRIMINATORS", "LOSS_TYPES", "Objective", "build_discriminators"]

DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "mpd": M.MultiPeriodDiscriminator,
    "mrd": M.MultiResolutionDiscriminator,
    "msstft": M.MultiScaleSTFTDiscriminator,
    "mbd": M.MultiBandDiscriminator,
}
RECONSTRUCTION = ("mel", "stft", "waveform", "sisdr", "envelope")
GAN = ("adversarial", "feature_matching")
LOSS_TYPES = (*RECONSTRUCTION, *GAN, "quantizer", "ssl", "lm")


def build_discriminators(specs: dict[str, dict[str, Any]] | None) -> tuple[nn.ModuleDict, dict[str, float],
                                                                           dict[str, str | None]]:  # fmt: skip
    """``(modules, weights, kinds)`` from ``{name: {args, weight?, kind?, tiny?}}``."""
    modules, weights, kinds = nn.ModuleDict(), {}, {}
    for name, spec in (specs or {}).items():
        if name not in DISCRIMINATORS:
            raise ValueError(f"unknown discriminator {name!r}; known: {', '.join(DISCRIMINATORS)}")
        args = dict(spec or {})
        weights[name] = float(args.pop("weight", 1.0))
        kinds[name] = args.pop("kind", None)
        cls = DISCRIMINATORS[name]
        try:
            modules[name] = cls.tiny(**args) if args.pop("tiny", False) else cls(**args)
        except TypeError as e:
            raise ValueError(f"cannot build discriminator {name!r} ({cls.__name__}) from {spec}: {e}") from e
    return modules, weights, kinds


def _straight_through(value: Tensor, latents: Tensor) -> Tensor:
    # Value of `value`, gradient to the encoder latents as the identity (the codebooks' straight-through estimator).
    return value + (latents - latents.detach())


class Objective(nn.Module):
    """The generator losses of a recipe and the GAN losses over its discriminators.

    Args:
        losses: ``{name: {"weight": w, "type"?: kind, **args}}`` (see the module docstring).
        codec_dim: the codec's latent width (distillation projections start there).
        sample_rate: the codec's rate.
        num_discriminators: how many discriminators the recipe has (adversarial losses need at least one).
        loss_weights: ``{name: w}`` overriding weights (the command line's merge-friendly way to change them).
        teachers: ``{name: source}`` overriding a distillation's ``teacher`` (a local directory when offline).
    """

    def __init__(self, losses: dict[str, dict[str, Any]], codec_dim: int, sample_rate: int,
                 num_discriminators: int, loss_weights: dict[str, float] | None = None,
                 teachers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__()
        if not losses:
            raise ValueError("losses is empty; give at least one, e.g. {'mel': {'weight': 15.0}}")
        loss_weights, teachers = dict(loss_weights or {}), dict(teachers or {})
        for what, names in (("loss_weights", loss_weights), ("teachers", teachers)):
            unknown = sorted(set(names) - set(losses))
            if unknown:
                raise ValueError(f"{what} names {unknown}, which are not in losses ({sorted(losses)})")
        self.sample_rate = int(sample_rate)
        self.kinds: dict[str, str] = {}
        self.weights: dict[str, float] = {}
        self.latents_of: dict[str, str | int] = {}
        self.gan_args: dict[str, dict[str, Any]] = {}
        self.caches: dict[str, L.TeacherFeatureCache] = {}
        self.terms = nn.ModuleDict()
        for name, raw in losses.items():
            spec = copy.deepcopy(dict(raw or {}))
            kind = spec.pop("type", name)
            if kind not in LOSS_TYPES:
                raise ValueError(f"loss {name!r} has unknown type {kind!r}; types: {', '.join(LOSS_TYPES)}")
            if "weight" not in spec:
                raise ValueError(f"loss {name!r} needs a 'weight' (its spec was {raw}); on the command line change "
                                 f"weights with --model.loss_weights.{name} W")
            weight = float(loss_weights.get(name, spec.pop("weight")))
            spec.pop("weight", None)
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"loss {name!r} weight must be finite and >= 0; got {weight}")
            self.kinds[name], self.weights[name] = kind, weight
            if name in teachers:
                spec["teacher"] = teachers[name]
            self._build(name, kind, spec, codec_dim)
        if num_discriminators == 0 and any(k in GAN for k in self.kinds.values()):
            raise ValueError("adversarial / feature_matching losses need discriminators; add some (e.g. "
                             "discriminators: {mpd: {}, mrd: {}}) or drop those losses for a GAN-free recipe")

    def _build(self, name: str, kind: str, spec: dict[str, Any], codec_dim: int) -> None:
        try:
            if kind == "mel":
                self.terms[name] = L.MultiScaleMelLoss(self.sample_rate, **spec)
            elif kind == "stft":
                self.terms[name] = L.MultiResolutionSTFTLoss(**spec)
            elif kind == "waveform":
                self.terms[name] = L.WaveformL1Loss(**spec)
            elif kind == "sisdr":
                self.terms[name] = L.SISDRLoss(**spec)
            elif kind == "envelope":
                self.terms[name] = L.EnvelopeCorrelationLoss(self.sample_rate, **spec)
            elif kind == "adversarial":
                self.gan_args[name] = {"kind": spec.pop("kind", "hinge"), "reduction": spec.pop("reduction", "sum")}
                L.AdversarialLoss(**self.gan_args[name])  # checks the values
                if spec:
                    raise TypeError(f"unexpected arguments {sorted(spec)}")
            elif kind == "feature_matching":
                self.terms[name] = L.FeatureMatchingLoss(**spec)
            elif kind == "quantizer":
                if spec:
                    raise TypeError(f"unexpected arguments {sorted(spec)}")
            elif kind in ("ssl", "lm"):
                latents = spec.pop("latents", "quantized")
                if not (latents in ("quantized", "encoder") or (isinstance(latents, int) and latents >= 1)):
                    raise ValueError(f"loss {name!r}: latents must be 'quantized', 'encoder' or a number of "
                                     f"codebooks >= 1; got {latents!r}")
                self.latents_of[name] = latents
                cache = spec.pop("cache", None)
                if "teacher" not in spec:
                    raise ValueError(f"loss {name!r} needs a 'teacher' (a Hugging Face id already downloaded, or a "
                                     f"local directory: --model.teachers.{name} DIR)")
                if kind == "ssl":
                    spec.setdefault("name", str(spec["teacher"]))
                    self.terms[name] = L.SSLDistillation(student_dim=codec_dim, sample_rate=self.sample_rate, **spec)
                    if cache is not None:
                        self.caches[name] = L.TeacherFeatureCache.for_teacher(cache, self.terms[name])
                else:
                    if cache is not None:
                        raise ValueError(f"loss {name!r}: LM distillation has no feature cache (text models are cheap)")
                    self.terms[name] = L.LMDistillation(student_dim=codec_dim, **spec)
        except TypeError as e:
            raise ValueError(f"cannot build loss {name!r} (type {kind}) from {spec}: {e}") from e

    # -------------------------------------------------------------------------------------------------------

    @property
    def uses_gan(self) -> bool:
        return any(k in GAN for k in self.kinds.values())

    def output_names(self) -> list[str]:
        """Losses that reach the model only through the reconstructed audio (what the balancer may rescale)."""
        return [n for n, k in self.kinds.items() if k in RECONSTRUCTION or k in GAN]

    def reconstruction(self, y: Tensor, x: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
        """Spectral / waveform terms of reconstruction ``y`` against input ``x`` (both ``[B, 1, S]``), in float32
        whatever the autocast dtype (the losses see to it). Losses at the same STFT sizes share the spectra
        (``voxtok.losses.shared_spectra``)."""
        with L.shared_spectra():
            return {n: self.terms[n](y, x, lengths) for n, k in self.kinds.items() if k in RECONSTRUCTION}

    def gan(self, discriminators: nn.ModuleDict, weights: dict[str, float], kinds: dict[str, str | None],
            y: Tensor, x: Tensor) -> dict[str, Tensor]:  # fmt: skip
        """Adversarial and feature-matching terms of ``y`` (gradients reach ``y``, never the discriminators)."""
        adv = [n for n, k in self.kinds.items() if k == "adversarial"]
        fm = [n for n, k in self.kinds.items() if k == "feature_matching"]
        out = {n: y.new_zeros(()) for n in adv + fm}
        for name, disc in discriminators.items():
            w = weights[name]
            logits, feats = disc(y)
            if fm:
                with torch.no_grad():
                    _, real_feats = disc(x)
            for n in adv:
                kind = kinds[name] or self.gan_args[n]["kind"]
                out[n] = out[n] + w * L.generator_loss(logits, kind, self.gan_args[n]["reduction"])
            for n in fm:
                out[n] = out[n] + w * self.terms[n](real_feats, feats)
        return out

    @staticmethod
    def discriminator(discriminators: nn.ModuleDict, weights: dict[str, float], kinds: dict[str, str | None],
                      default_kind: str, reduction: str, x: Tensor, y: Tensor) -> dict[str, Tensor]:  # fmt: skip
        """Per-discriminator losses (weighted) on real ``x`` and detached fake ``y``; one pass over both."""
        b = x.shape[0]
        out = {}
        for name, disc in discriminators.items():
            logits, _ = disc(torch.cat([x, y.detach()], dim=0))
            real, fake = [lg[:b] for lg in logits], [lg[b:] for lg in logits]
            out[name] = weights[name] * L.discriminator_loss(real, fake, kinds[name] or default_kind, reduction)
        return out

    def distillation(self, codec: nn.Module, out: Any, batch: dict[str, Any]) -> dict[str, Tensor]:
        """SSL / LM distillation terms for a ``CodecOutput`` of ``batch``."""
        terms = {}
        for name, kind in self.kinds.items():
            if kind not in ("ssl", "lm"):
                continue
            latents = self._latents(codec, out, self.latents_of[name])
            if kind == "lm":
                terms[name] = self.terms[name](latents, batch["text"], mask=out.mask)
                continue
            cached = self._cached(name, batch, latents.device)
            if cached is not None:
                feats, lengths = cached
                terms[name] = self.terms[name](latents, mask=out.mask, teacher_features=feats, teacher_lengths=lengths)
            else:
                terms[name] = self.terms[name](latents, batch["audio"], mask=out.mask, audio_lengths=batch["lengths"])
        return terms

    @staticmethod
    def _latents(codec: nn.Module, out: Any, which: str | int) -> Tensor:
        if which == "encoder":
            return out.latents
        if which == "quantized" or int(which) >= codec.num_codebooks:
            return out.quantizer.z_q
        value = codec.quantizer.decode(out.quantizer.codes[:, : int(which)])
        return _straight_through(value.to(out.latents.dtype), out.latents)

    def _cached(self, name: str, batch: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor] | None:
        """Cached teacher frames of each crop (sliced from its utterance's features), or None on any cache miss."""
        cache = self.caches.get(name)
        if cache is None or not all(i in cache for i in batch["id"]):
            return None
        parts = []
        for i, uid in enumerate(batch["id"]):
            feats = cache.get(uid)
            frames, total = feats.shape[0], int(batch["total"][i])
            off, n = int(batch["offset"][i]), int(batch["lengths"][i])
            f0 = min(frames - 1, off * frames // total)
            f1 = max(f0 + 1, min(frames, math.ceil((off + n) * frames / total)))
            parts.append(feats[f0:f1])
        lengths = torch.tensor([p.shape[0] for p in parts], dtype=torch.long)
        out = torch.zeros(len(parts), int(lengths.max()), parts[0].shape[1])
        for i, p in enumerate(parts):
            out[i, : p.shape[0]] = p
        return out.to(device), lengths
