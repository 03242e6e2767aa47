"""Semantic distillation: pull codec latents toward a frozen speech (SSL) or text (LM) model's hidden states.

- ``SSLDistillation`` (SpeechTokenizer, DM-Codec, Mimi): a speech model (HuBERT, WavLM, wav2vec2, w2v-BERT, any
  ``transformers`` audio model) runs on the input audio, resampled to its rate; its frames are aligned to the codec
  frames; a learned 1x1 projection maps the codec latent ``[B, D, T]`` to the teacher width.
- ``LMDistillation`` (DM-Codec): a BERT-like text model runs on the transcript and its token states are placed on
  the codec frame axis, either DM-Codec's way (tokens padded / truncated to the number of frames) or spread over
  the utterance in proportion to each token's characters (the default), or by a given alignment.
- ``CombinedDistillation``: both, with weights (DM-Codec's "combined" mode).

Teachers are frozen (eval mode, ``requires_grad=False``, run under ``no_grad``) and kept outside the module's
parameters and state dict, so they neither train nor land in codec checkpoints; ``.to(device)`` still moves them.
Nothing is downloaded: a model id must already be on disk (a directory, or the Hugging Face cache); otherwise the
error says how to get it there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.audio import lengths_to_mask, promote, resample

__all__ = [
    "CombinedDistillation",
    "LMDistillation",
    "SSLDistillation",
    "align_frames",
    "distillation_loss",
    "load_teacher",
    "spread_placement",
]

logger = logging.getLogger(__name__)

LossKind = Literal["d-axis", "t-axis", "cosine"]
Layer = int | Sequence[int] | Literal["average"]
TeacherSource = str | os.PathLike | nn.Module


# ----------------------------------------------------------------------------------------------------------
# Loss and alignment helpers


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
    elif kind == "cosine":
        per_frame = 1 - F.cosine_similarity(student, teacher, dim=-1)
    else:
        raise ValueError(f"loss must be 'd-axis', 't-axis' or 'cosine'; got {kind!r}")
    w = mask.to(per_frame.dtype)
    return (per_frame * w).sum() / w.sum().clamp(min=1)


def _resize(x: Tensor, size: int, mode: str) -> Tensor:
    """``[L, H]`` -> ``[size, H]`` along time."""
    if x.shape[0] == size:
        return x
    if mode == "auto":
        mode = "area" if x.shape[0] > size else "linear"
    xt = x.t()[None]  # [1, H, L]
    if mode == "area":
        y = F.adaptive_avg_pool1d(xt, size)
    elif mode == "linear":
        y = F.interpolate(xt, size=size, mode="linear", align_corners=False)
    elif mode == "nearest":
        y = F.interpolate(xt, size=size, mode="nearest")
    else:
        raise ValueError(f"align must be 'auto', 'linear', 'area' or 'nearest'; got {mode!r}")
    return y[0].t()


def align_frames(
    features: Tensor,
    num_frames: int,
    feature_lengths: Tensor | None = None,
    frame_lengths: Tensor | None = None,
    mode: str = "auto",
) -> Tensor:
    """Map teacher frames ``[B, T', H]`` onto ``num_frames`` codec frames: ``[B, T, H]``.

    Each item's valid teacher frames (``feature_lengths``) are resized to its valid codec frames
    (``frame_lengths``), so different rates line up in time whichever is faster. ``mode="auto"`` averages
    (``"area"``) when the teacher has more frames and interpolates linearly when it has fewer; padded codec
    frames are left at 0.
    """
    b, t_in, h = features.shape
    if feature_lengths is None:
        feature_lengths = torch.full((b,), t_in, dtype=torch.long)
    if frame_lengths is None:
        frame_lengths = torch.full((b,), num_frames, dtype=torch.long)
    out = features.new_zeros(b, num_frames, h)
    for i in range(b):
        n_in, n_out = int(feature_lengths[i]), int(frame_lengths[i])
        if n_in <= 0 or n_out <= 0:
            continue
        if n_in > t_in or n_out > num_frames:
            raise ValueError(
                f"item {i}: lengths ({n_in} teacher, {n_out} codec frames) exceed the tensors ({t_in}, {num_frames})"
            )
        out[i, :n_out] = _resize(features[i, :n_in], n_out, mode)
    return out


def spread_placement(char_counts: Sequence[int] | Tensor, num_frames: int) -> Tensor:
    """Token index for each of ``num_frames`` frames, each token spanning frames in proportion to its characters.

    Spans are ``num_frames * chars / total`` rounded by largest remainder, so they add up to ``num_frames``
    and each is within one frame of its share. When there are at least as many frames as tokens, a token whose
    share rounds to 0 takes a frame from the longest span, so every token is heard. Every frame gets a token and
    indices never decrease (token order is kept). Returns ``[num_frames]`` int64.
    """
    counts = torch.as_tensor(char_counts, dtype=torch.float64).clamp(min=1)
    n = counts.numel()
    if n == 0:
        raise ValueError("cannot place 0 tokens; the transcript produced no tokens")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive; got {num_frames}")
    quota = counts / counts.sum() * num_frames
    spans = quota.floor().long()
    left = num_frames - int(spans.sum())
    if left > 0:
        # stable sort: equal remainders go to the earlier token
        order = torch.sort(quota - spans, descending=True, stable=True).indices
        spans[order[:left]] += 1
    if num_frames >= n:
        for j in (spans == 0).nonzero()[:, 0].tolist():
            spans[int(spans.argmax())] -= 1
            spans[j] += 1
    return torch.repeat_interleave(torch.arange(n), spans)


# ----------------------------------------------------------------------------------------------------------
# Loading teachers


def _not_local_error(name: str, err: Exception) -> ValueError:
    return ValueError(
        f"teacher {name!r} is not available locally, and voxtok never downloads models. Download it once "
        f"(e.g. `huggingface-cli download {name} --local-dir DIR`, or `huggingface_hub.snapshot_download({name!r})` "
        "to fill the Hugging Face cache) and pass DIR or the id; or pass an nn.Module you built. "
        f"(transformers said: {err})"
    )


def load_teacher(source: TeacherSource, tokenizer: bool = False) -> tuple[nn.Module, Any, str]:
    """``(model, tokenizer or None, name)`` from a local directory, a cached model id, or a built module.

    Loads with ``local_files_only=True``: a directory saved with ``save_pretrained`` or an id already in the
    Hugging Face cache. Raises ``ValueError`` saying how to provide the model when it is not on disk.
    """
    if isinstance(source, nn.Module):
        cfg = getattr(source, "config", None)
        name = getattr(cfg, "_name_or_path", "") or type(source).__name__
        return source, None, str(name)
    from transformers import AutoModel, AutoTokenizer

    name = str(source)
    path = Path(name).expanduser()
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_like_path and not path.is_dir():
        raise ValueError(f"teacher directory {str(path)!r} does not exist; expected a folder from save_pretrained")
    where = str(path) if path.is_dir() else name
    try:
        model = AutoModel.from_pretrained(where, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True) if tokenizer else None
    except (OSError, ValueError) as e:
        if path.is_dir():
            raise ValueError(f"teacher directory {where!r} could not be loaded: {e}") from e
        raise _not_local_error(name, e) from e
    return model, tok, name


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _num_hidden_states(model: nn.Module) -> int | None:
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return None if n is None else int(n) + 1  # embeddings / feature projection, then one per layer


def _check_layer(layer: Layer, count: int | None) -> Layer:
    if layer == "average":
        return layer
    if isinstance(layer, str):
        raise ValueError(f"layer must be an int, a list of ints or 'average'; got {layer!r}")
    layers = [layer] if isinstance(layer, int) else list(layer)
    if not layers or not all(isinstance(i, int) for i in layers):
        raise ValueError(f"layer must be an int, a non-empty list of ints or 'average'; got {layer!r}")
    if count is not None:
        bad = [i for i in layers if not -count <= i < count]
        if bad:
            raise ValueError(f"layer(s) {bad} out of range: the teacher has {count} hidden states (0 .. {count - 1})")
    return layer


def _select(hidden_states: Sequence[Tensor], layer: Layer) -> Tensor:
    """Pick or average hidden states ``[B, T, H]``. ``"average"`` is the mean of all of them (DM-Codec's 'avg')."""
    if layer == "average":
        return torch.stack(list(hidden_states)).mean(0)
    if isinstance(layer, int):
        return hidden_states[layer]
    return torch.stack([hidden_states[i] for i in layer]).mean(0)


def _layer_key(layer: Layer) -> str:
    return layer if isinstance(layer, str) else ",".join(str(i) for i in ([layer] if isinstance(layer, int) else layer))


def _hidden_size(model: nn.Module, teacher_dim: int | None) -> int:
    cfg_dim = getattr(getattr(model, "config", None), "hidden_size", None)
    if cfg_dim is not None and teacher_dim is not None and int(cfg_dim) != int(teacher_dim):
        raise ValueError(f"teacher_dim={teacher_dim} but the teacher's config has hidden_size={cfg_dim}")
    dim = teacher_dim if teacher_dim is not None else cfg_dim
    if dim is None:
        raise ValueError("the teacher has no config.hidden_size; pass teacher_dim")
    return int(dim)


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


class _FrozenTeacher(nn.Module):
    """Base: holds a frozen teacher outside the module tree and a trainable projection inside it."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        # A list hides the teacher from parameters(), state_dict() and train(); _apply moves it with the module.
        self._teacher = [_freeze(teacher)]

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def _apply(self, fn: Any, recurse: bool = True) -> _FrozenTeacher:  # type: ignore[override]
        super()._apply(fn, recurse)
        self._teacher[0]._apply(fn)
        return self

    def project(self, latents: Tensor) -> Tensor:
        """``[B, D, T]`` -> ``[B, T, H]``."""
        if latents.dim() != 3 or latents.shape[1] != self.student_dim:
            raise ValueError(f"latents must be [B, {self.student_dim}, T]; got {tuple(latents.shape)}")
        return self.projection(latents).transpose(1, 2)

    student_dim: int
    projection: nn.Module


def _frame_mask(mask: Tensor | None, latents: Tensor) -> Tensor:
    b, _, t = latents.shape
    if mask is None:
        return torch.ones(b, t, dtype=torch.bool, device=latents.device)
    if mask.shape != (b, t):
        raise ValueError(f"mask must be [B, T] = [{b}, {t}] (True = valid frame); got {tuple(mask.shape)}")
    return mask.to(device=latents.device, dtype=torch.bool)


# ----------------------------------------------------------------------------------------------------------
# SSL distillation


def _feature_extractor_settings(source: TeacherSource) -> dict[str, Any]:
    """``sampling_rate`` / ``do_normalize`` from a saved ``preprocessor_config.json`` (plain JSON), if any."""
    if isinstance(source, nn.Module):
        return {}
    path = Path(str(source)).expanduser()
    if path.is_dir():
        f = path / "preprocessor_config.json"
        return json.loads(f.read_text()) if f.is_file() else {}
    try:
        from transformers import AutoFeatureExtractor

        return AutoFeatureExtractor.from_pretrained(str(source), local_files_only=True).to_dict()
    except (OSError, ValueError):
        return {}


def _load_feature_extractor(source: TeacherSource) -> Any:
    if isinstance(source, nn.Module):
        return None
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(str(Path(str(source)).expanduser()), local_files_only=True)
    except (OSError, ValueError):
        return None


class SSLDistillation(_FrozenTeacher):
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
        teacher: TeacherSource,
        student_dim: int,
        sample_rate: int,
        *,
        layer: Layer = -1,
        loss: LossKind = "d-axis",
        teacher_sample_rate: int | None = None,
        normalize_input: bool | None = None,
        teacher_dim: int | None = None,
        projection: nn.Module | None = None,
        align: str = "auto",
        name: str | None = None,
        feature_extractor: Any = None,
    ) -> None:
        if loss not in ("d-axis", "t-axis", "cosine"):
            raise ValueError(f"loss must be 'd-axis', 't-axis' or 'cosine'; got {loss!r}")
        if align not in ("auto", "linear", "area", "nearest"):
            raise ValueError(f"align must be 'auto', 'linear', 'area' or 'nearest'; got {align!r}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive; got {sample_rate}")
        model, _, loaded_name = load_teacher(teacher)
        super().__init__(model)
        settings = _feature_extractor_settings(teacher)
        self.sample_rate = int(sample_rate)
        self.teacher_sample_rate = int(teacher_sample_rate or settings.get("sampling_rate") or 16000)
        self.normalize_input = bool(settings.get("do_normalize", False) if normalize_input is None else normalize_input)
        self.layer = _check_layer(layer, _num_hidden_states(model))
        self.loss_kind: LossKind = loss
        self.align = align
        self.name = name or loaded_name
        self.student_dim = int(student_dim)
        self.teacher_dim = _hidden_size(model, teacher_dim)
        self.projection = _projection(self.student_dim, self.teacher_dim, projection)
        main_input = getattr(model, "main_input_name", "input_values")
        self.feature_extractor = None
        if main_input != "input_values":
            # w2v-BERT and other models on filterbank features: their own feature extractor computes the input.
            self.feature_extractor = feature_extractor or _load_feature_extractor(teacher)
            if self.feature_extractor is None:
                raise ValueError(
                    f"teacher {self.name!r} takes {main_input!r}, not a waveform: pass feature_extractor= (e.g. "
                    "AutoFeatureExtractor.from_pretrained(DIR)) or save its preprocessor_config.json beside the model"
                )
            if teacher_sample_rate is None:
                self.teacher_sample_rate = int(self.feature_extractor.sampling_rate)
            self.normalize_input = False  # the feature extractor normalises its own features

    @property
    def layer_key(self) -> str:
        """The layer choice as a string (``"-1"``, ``"3,4"``, ``"average"``), as stored in feature caches."""
        return _layer_key(self.layer)

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
            feats = _select(out.hidden_states, self.layer)
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
        fmask = _frame_mask(mask, latents)
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


# ----------------------------------------------------------------------------------------------------------
# LM distillation


class LMDistillation(_FrozenTeacher):
    """Distil a frozen text model's token states (on the transcript) into codec latents (DM-Codec).

    Args:
        teacher: a directory / cached id loadable by ``AutoModel`` and ``AutoTokenizer`` (BERT-like), or a built
            ``nn.Module`` (then ``tokenizer`` is required).
        student_dim: codec latent width D.
        tokenizer: the tokenizer, when ``teacher`` is a module. A fast tokenizer gives character offsets; others
            fall back to the length of each token's text.
        layer: hidden-state index, list of indices to average, or ``"average"`` (DM-Codec's "avg": all states).
        loss: ``"d-axis"`` (DM-Codec), ``"t-axis"`` or ``"cosine"``.
        placement: ``"spread"`` (default): the transcript's tokens (special tokens dropped) cover the utterance,
            each over a span proportional to its characters. ``"pad"``: DM-Codec's placement: the tokenized
            transcript with its special tokens, padded with the pad token (or truncated) to the item's number of
            frames, token i on frame i.
        missing: ``"error"`` (default) raises when an item has no transcript; ``"skip"`` leaves such items out of
            the loss and counts them in ``self.skipped`` (logged).
        teacher_dim, projection: as in ``SSLDistillation``.
        name: the teacher's name in feature caches.
    """

    def __init__(
        self,
        teacher: TeacherSource,
        student_dim: int,
        *,
        tokenizer: Any = None,
        layer: Layer = -1,
        loss: LossKind = "d-axis",
        placement: Literal["spread", "pad"] = "spread",
        missing: Literal["error", "skip"] = "error",
        teacher_dim: int | None = None,
        projection: nn.Module | None = None,
        name: str | None = None,
    ) -> None:
        if loss not in ("d-axis", "t-axis", "cosine"):
            raise ValueError(f"loss must be 'd-axis', 't-axis' or 'cosine'; got {loss!r}")
        if placement not in ("spread", "pad"):
            raise ValueError(f"placement must be 'spread' or 'pad'; got {placement!r}")
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip'; got {missing!r}")
        model, tok, loaded_name = load_teacher(
            teacher, tokenizer=tokenizer is None and not isinstance(teacher, nn.Module)
        )
        tokenizer = tokenizer if tokenizer is not None else tok
        if tokenizer is None:
            raise ValueError("a teacher given as an nn.Module needs its tokenizer: pass tokenizer=")
        super().__init__(model)
        self.tokenizer = tokenizer
        self.layer = _check_layer(layer, _num_hidden_states(model))
        self.loss_kind: LossKind = loss
        self.placement = placement
        self.missing = missing
        self.skipped = 0
        self.name = name or loaded_name
        self.student_dim = int(student_dim)
        self.teacher_dim = _hidden_size(model, teacher_dim)
        self.projection = _projection(self.student_dim, self.teacher_dim, projection)
        cfg = getattr(model, "config", None)
        self.max_tokens = int(getattr(cfg, "max_position_embeddings", 512) or 512)

    @property
    def layer_key(self) -> str:
        return _layer_key(self.layer)

    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        device = next(self.teacher.parameters(), input_ids).device
        out = self.teacher(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_hidden_states=True
        )
        feats = _select(out.hidden_states, self.layer).float()
        if feats.shape[-1] != self.teacher_dim:
            raise ValueError(f"teacher states have width {feats.shape[-1]}; expected {self.teacher_dim}")
        return feats

    def _char_counts(self, text: str, ids: list[int], offsets: list[tuple[int, int]] | None) -> list[int]:
        if offsets is not None:
            return [max(1, e - s) for s, e in offsets]
        pieces = self.tokenizer.convert_ids_to_tokens(ids)
        return [max(1, len(p.removeprefix("##").lstrip("\u2581\u0120"))) for p in pieces]

    @torch.no_grad()
    def token_states(self, transcripts: Sequence[str]) -> list[tuple[Tensor, list[int]]]:
        """Per transcript: ``(states [N, H], characters per token)`` for its N non-special tokens."""
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        enc = self.tokenizer(
            list(transcripts),
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_offsets_mapping=fast,
        )
        feats = self._run(enc["input_ids"], enc["attention_mask"])
        result = []
        for i, text in enumerate(transcripts):
            keep = (enc["attention_mask"][i] == 1) & (enc["special_tokens_mask"][i] == 0)
            idx = keep.nonzero()[:, 0]
            if idx.numel() == 0:
                raise ValueError(f"transcript {i} ({text!r}) has no tokens")
            offsets = [tuple(o) for o in enc["offset_mapping"][i][idx].tolist()] if fast else None
            counts = self._char_counts(text, enc["input_ids"][i][idx].tolist(), offsets)
            result.append((feats[i, idx], counts))
        return result

    @torch.no_grad()
    def _padded_states(self, transcripts: Sequence[str], frames: Sequence[int], total: int) -> Tensor:
        """DM-Codec placement: ``[B, total, H]``, item i's tokens padded / truncated to ``frames[i]``."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        n = min(total, self.max_tokens)
        ids = torch.full((len(transcripts), n), pad_id, dtype=torch.long)
        att = torch.zeros(len(transcripts), n, dtype=torch.long)
        for i, (text, f) in enumerate(zip(transcripts, frames, strict=True)):
            f = min(f, n)
            enc = self.tokenizer(text, padding="max_length", truncation=True, max_length=f, return_tensors="pt")
            ids[i, :f] = enc["input_ids"][0, :f]
            att[i, :f] = enc["attention_mask"][0, :f]
        feats = self._run(ids, att)
        for i, f in enumerate(frames):
            feats[i, f:] = 0  # past the item's frames: outside the utterance
        # Rows past the model's max positions stay 0 (a longer utterance than the LM can read).
        return F.pad(feats, (0, 0, 0, total - n))

    def targets(
        self,
        transcripts: Sequence[str],
        frames: Sequence[int],
        total: int,
        alignments: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Teacher targets on the codec frame axis: ``([B, total, H], valid [B, total])``.

        ``frames[i]`` is item i's number of valid codec frames. ``alignments[i]``, when given, is ``[frames[i]]``
        int64: the index of the (non-special) token on each frame, -1 for frames with none (left out of the loss).
        """
        b = len(transcripts)
        valid = torch.zeros(b, total, dtype=torch.bool)
        if self.placement == "pad" and alignments is None:
            for i, f in enumerate(frames):
                valid[i, :f] = True
            return self._padded_states(transcripts, frames, total), valid
        states = self.token_states(transcripts)
        out = torch.zeros(b, total, self.teacher_dim)
        for i, ((feats, counts), f) in enumerate(zip(states, frames, strict=True)):
            if f <= 0:
                continue
            align = None if alignments is None else alignments[i]
            if align is None:
                index = spread_placement(counts, f)
            else:
                index = torch.as_tensor(align, dtype=torch.long).cpu()
                if index.shape != (f,):
                    raise ValueError(
                        f"alignment of item {i} must be [{f}] (one token index per frame); got {tuple(index.shape)}"
                    )
                if (index >= len(counts)).any() or (index < -1).any():
                    raise ValueError(
                        f"alignment of item {i} holds token indices outside [-1, {len(counts)}); got "
                        f"[{int(index.min())}, {int(index.max())}]"
                    )
            hit = index >= 0
            out[i, :f][hit] = feats[index[hit]].cpu()
            valid[i, :f] = hit
        return out, valid

    def forward(
        self,
        latents: Tensor,
        transcripts: Sequence[str | None],
        *,
        mask: Tensor | None = None,
        alignments: Sequence[Tensor | None] | None = None,
    ) -> Tensor:
        """Distillation loss (scalar).

        Args:
            latents: ``[B, D, T]`` codec latents.
            transcripts: one string per item; None or empty means missing (see ``missing``).
            mask: ``[B, T]`` valid codec frames.
            alignments: optional per-item token index per frame (see ``targets``).
        """
        fmask = _frame_mask(mask, latents)
        b, _, t = latents.shape
        if len(transcripts) != b:
            raise ValueError(f"need one transcript per item ({b}); got {len(transcripts)}")
        present = [i for i, s in enumerate(transcripts) if isinstance(s, str) and s.strip()]
        if len(present) < b:
            absent = [i for i in range(b) if i not in present]
            if self.missing == "error":
                raise ValueError(
                    f"LM distillation needs a transcript for every item; items {absent} have none. Provide "
                    "transcripts, or construct with missing='skip' to leave such items out"
                )
            self.skipped += len(absent)
            logger.info(
                "LM distillation: skipped %d item(s) without a transcript (%d so far)", len(absent), self.skipped
            )
        if not present:
            return latents.sum() * 0.0  # keeps the graph connected for DDP
        idx = torch.tensor(present, device=latents.device)
        latents, fmask = latents.index_select(0, idx), fmask.index_select(0, idx)
        frames = fmask.sum(1).tolist()
        aligns = None if alignments is None else [alignments[i] for i in present]
        target, valid = self.targets([transcripts[i] for i in present], frames, t, aligns)
        # Frames are assumed to be a prefix of each item (padding at the end), as lengths_to_mask gives.
        fmask = fmask & valid.to(fmask.device)
        return distillation_loss(self.project(latents), target.to(latents.device, latents.dtype), fmask, self.loss_kind)


class CombinedDistillation(nn.Module):
    """DM-Codec's combined mode: ``ssl_weight * SSL loss + lm_weight * LM loss``.

    ``losses(...)`` returns both terms (for logging); ``forward`` their weighted sum.
    """

    def __init__(
        self, ssl: SSLDistillation, lm: LMDistillation, ssl_weight: float = 1.0, lm_weight: float = 1.0
    ) -> None:
        super().__init__()
        if ssl_weight < 0 or lm_weight < 0:
            raise ValueError(f"weights must be >= 0; got ssl_weight={ssl_weight}, lm_weight={lm_weight}")
        if ssl.student_dim != lm.student_dim:
            raise ValueError(f"SSL and LM parts distil different latent widths ({ssl.student_dim} vs {lm.student_dim})")
        self.ssl, self.lm = ssl, lm
        self.ssl_weight, self.lm_weight = float(ssl_weight), float(lm_weight)

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
    ) -> Tensor:
        """Weighted sum of the two terms; arguments as in ``SSLDistillation`` and ``LMDistillation``."""
        terms = self.losses(
            latents,
            audio,
            transcripts,
            mask=mask,
            audio_lengths=audio_lengths,
            teacher_features=teacher_features,
            teacher_lengths=teacher_lengths,
            alignments=alignments,
        )
        return self.ssl_weight * terms["ssl"] + self.lm_weight * terms["lm"]
