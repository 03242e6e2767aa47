"""SSL distillation (SpeechTokenizer, DM-Codec, Mimi): pull codec latents toward a frozen speech model's hidden
states.

A speech model (HuBERT, WavLM, wav2vec2, w2v-BERT, any ``transformers`` audio model) runs on the input audio,
resampled to its rate; its frames are aligned to the codec frames (``targets.align_frames``); a learned 1x1
projection maps the codec latent ``[B, D, T]`` to the teacher width. Nothing is downloaded: a model id must already
be on disk (a directory, or the Hugging Face cache); otherwise the error says how to get it there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from voxtok.audio import lengths_to_mask, promote, resample
from voxtok.losses.distill.base import Distillation, LossKind, distillation_loss, frame_mask
from voxtok.losses.distill.targets import ALIGN_MODES, align_frames
from voxtok.models import hf

__all__ = ["SSLDistillation"]


class SSLDistillation(Distillation):
    """Distil a frozen speech model's hidden states into codec latents.

    Args:
        teacher: a directory saved with ``save_pretrained``, a model id already in the Hugging Face cache (loaded
            with ``AutoModel.from_pretrained(..., local_files_only=True)``), or a built ``nn.Module`` that takes
            ``input_values [B, S]`` and returns ``hidden_states`` (a transformers model) or a tensor ``[B, T', H]``.
        student_dim: codec latent width D (of the RVQ stage or semantic codebook being distilled).
        sample_rate: the codec's audio rate; audio is resampled from it to the teacher's rate.
        layer: hidden-state index (0 = before the first transformer layer, -1 = last), a list of indices to
            average, or ``"average"`` for all of them.
        loss: ``"d-axis"``, ``"t-axis"`` or ``"cosine"`` (see ``distillation_loss``).
        teacher_sample_rate: the teacher's input rate; defaults to its ``preprocessor_config.json``, else 16 kHz.
        normalize_input: zero-mean / unit-variance input per item (what the model's feature extractor does with
            ``do_normalize``); defaults to the saved feature-extractor setting, else False.
        teacher_dim: the teacher width; checked against the config's ``hidden_size`` when both exist.
        projection: a module ``[B, D, T] -> [B, H, T]``; default a 1x1 convolution. Its output width must equal the
            teacher's hidden size (checked here).
        align: how teacher frames map to codec frames (``align_frames``).
        name: the teacher's name in feature caches; defaults to the id or path given.
        feature_extractor: for teachers that take ``input_features`` rather than a waveform (w2v-BERT): the
            transformers feature extractor that computes them; loaded from the teacher's directory when omitted.
    """

    def __init__(
        self,
        teacher: hf.ModelSource | nn.Module,
        student_dim: int,
        sample_rate: int,
        *,
        layer: hf.Layer = -1,
        loss: LossKind = "d-axis",
        teacher_sample_rate: int | None = None,
        normalize_input: bool | None = None,
        teacher_dim: int | None = None,
        projection: nn.Module | None = None,
        align: str = "auto",
        name: str | None = None,
        feature_extractor: Any = None,
    ) -> None:
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}; got {align!r}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive; got {sample_rate}")
        model, _, loaded_name = hf.load_pretrained(teacher)
        super().__init__(model, name=name or loaded_name, student_dim=student_dim, teacher_dim=teacher_dim,
                         projection=projection, layer=layer, loss=loss)  # fmt: skip
        settings = hf.feature_extractor_settings(teacher)
        self.sample_rate = int(sample_rate)
        self.teacher_sample_rate = int(teacher_sample_rate or settings.get("sampling_rate") or 16000)
        self.normalize_input = bool(settings.get("do_normalize", False) if normalize_input is None else normalize_input)
        self.align = align
        main_input = getattr(model, "main_input_name", "input_values")
        self.feature_extractor = None
        if main_input != "input_values":
            # w2v-BERT and other models on filterbank features: their own feature extractor computes the input.
            self.feature_extractor = feature_extractor or hf.load_feature_extractor(teacher)
            if self.feature_extractor is None:
                raise ValueError(
                    f"teacher {self.name!r} takes {main_input!r}, not a waveform: pass feature_extractor= (e.g. "
                    "AutoFeatureExtractor.from_pretrained(DIR)) or save its preprocessor_config.json beside the model"
                )
            if teacher_sample_rate is None:
                self.teacher_sample_rate = int(self.feature_extractor.sampling_rate)
            self.normalize_input = False  # the feature extractor normalises its own features

    def _teacher_lengths(self, lengths: Tensor, frames: int, samples: int) -> Tensor:
        fn = getattr(self.teacher, "_get_feat_extract_output_lengths", None)
        out = (
            fn(lengths) if fn is not None else torch.div(lengths * frames + samples - 1, samples, rounding_mode="floor")
        )
        return torch.as_tensor(out, dtype=torch.long).clamp(min=1, max=frames)

    @torch.no_grad()
    def teacher_features(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the teacher on audio at the codec's rate.

        Args:
            audio: ``[B, 1, S]`` (or ``[B, S]``); several channels are averaged.
            lengths: ``[B]`` valid samples per item; padding is zeroed and masked out of the teacher's attention.

        Returns:
            ``(features [B, T', H], lengths [B])`` in teacher frames.
        """
        audio = promote(audio).mean(1)  # [B, S]
        b, s = audio.shape
        if lengths is None:
            lengths = torch.full((b,), s, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        if lengths.shape != (b,) or (lengths <= 0).any() or (lengths > s).any():
            raise ValueError(f"audio lengths must be [B] = [{b}] in [1, {s}]; got {lengths.tolist()}")
        device = next(self.teacher.parameters(), audio).device
        # The audio stays on its device: voxtok.audio.resample uses soxr on the CPU and julius on an accelerator.
        # Zeroing before resampling too: the resampler's filter would otherwise carry padding into valid samples.
        x = audio.detach().float() * lengths_to_mask(lengths.to(audio.device), s)
        x = resample(x, self.sample_rate, self.teacher_sample_rate)
        rs = [min(x.shape[-1], max(1, round(int(n) * self.teacher_sample_rate / self.sample_rate))) for n in lengths]
        t_lengths = torch.tensor(rs, dtype=torch.long)
        mask = lengths_to_mask(t_lengths.to(x.device), x.shape[-1])
        x = x * mask
        if self.normalize_input:
            n = t_lengths[:, None].float()
            mean = x.sum(-1, keepdim=True) / n
            var = ((x - mean) * mask).pow(2).sum(-1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * mask
        if (t_lengths == t_lengths[0]).all():
            return self._run(x, t_lengths, device)
        # Items of different lengths run one at a time: group norm over time (HuBERT / wav2vec2 base) and
        # convolutions over time would otherwise let the padding change the valid frames.
        parts = [self._run(x[i : i + 1, : int(n)], t_lengths[i : i + 1], device) for i, n in enumerate(t_lengths)]
        feats = parts[0][0].new_zeros(b, max(p.shape[1] for p, _ in parts), self.teacher_dim)
        for i, (p, _) in enumerate(parts):
            feats[i, : p.shape[1]] = p[0]
        return feats, torch.cat([n for _, n in parts])

    def _run(self, x: Tensor, lengths: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Teacher on ``x`` ``[b, S']`` at its rate (zero past ``lengths``): ``(features, frames)``."""
        mask = lengths_to_mask(lengths, x.shape[-1])
        if self.feature_extractor is not None:
            enc = self.feature_extractor(
                [x[i, : int(n)].cpu().numpy() for i, n in enumerate(lengths)],
                sampling_rate=self.teacher_sample_rate,
                return_tensors="pt",
                padding=True,
                return_attention_mask=True,
            )
            att = enc["attention_mask"]
            out = self.teacher(
                input_features=enc["input_features"].to(device),
                attention_mask=att.to(device),
                output_hidden_states=True,
            )
            frames = att.sum(-1).long()
        else:
            out = self.teacher(x.to(device), attention_mask=mask.long().to(device), output_hidden_states=True)
            frames = None
        if isinstance(out, Tensor):
            if self.layer not in (-1, 0, "average"):
                raise ValueError(f"the teacher returns one tensor, so layer must be -1; got {self.layer!r}")
            feats = out
        else:
            feats = hf.select_layer(out.hidden_states, self.layer)
        if feats.dim() != 3 or feats.shape[-1] != self.teacher_dim:
            raise ValueError(f"teacher features must be [B, T', {self.teacher_dim}]; got {tuple(feats.shape)}")
        if frames is None:
            frames = self._teacher_lengths(lengths, feats.shape[1], x.shape[-1])
        return feats.float(), frames.cpu().clamp(min=1, max=feats.shape[1])

    def forward(
        self,
        latents: Tensor,
        audio: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        audio_lengths: Tensor | None = None,
        teacher_features: Tensor | None = None,
        teacher_lengths: Tensor | None = None,
    ) -> Tensor:
        """Distillation loss (scalar).

        Args:
            latents: ``[B, D, T]`` codec latents (e.g. the first RVQ stage's output).
            audio: ``[B, 1, S]`` input audio at ``sample_rate``; not needed with ``teacher_features``.
            mask: ``[B, T]`` valid codec frames (True); padded frames are left out of the loss.
            audio_lengths: ``[B]`` valid samples of ``audio``.
            teacher_features: precomputed ``[B, T', H]`` (e.g. from a ``TeacherFeatureCache``).
            teacher_lengths: ``[B]`` valid frames of ``teacher_features``.
        """
        fmask = frame_mask(mask, latents)
        if teacher_features is None:
            if audio is None:
                raise ValueError("pass the input audio or precomputed teacher_features")
            teacher_features, teacher_lengths = self.teacher_features(audio, audio_lengths)
        elif teacher_features.dim() != 3 or teacher_features.shape[-1] != self.teacher_dim:
            raise ValueError(
                f"teacher_features must be [B, T', {self.teacher_dim}]; got {tuple(teacher_features.shape)}"
            )
        target = align_frames(
            teacher_features.to(latents.device, latents.dtype),
            latents.shape[-1],
            teacher_lengths,
            fmask.sum(1).cpu(),
            self.align,
        )
        return distillation_loss(self.project(latents), target, fmask, self.loss_kind)
