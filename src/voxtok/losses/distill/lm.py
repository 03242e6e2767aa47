"""LM distillation (DM-Codec): pull codec latents toward a frozen text model's token states on the transcript.

The text model (BERT-like) runs on the transcript and its token states are placed on the codec frame axis, either
DM-Codec's way (tokens padded / truncated to the number of frames), spread over the utterance in proportion to each
token's characters (the default, ``targets.spread_placement``), or by a given alignment.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.losses.distill.base import Distillation, LossKind, distillation_loss, frame_mask
from voxtok.losses.distill.targets import spread_placement
from voxtok.models import hf

__all__ = ["LMDistillation"]

# The package's logger: skipped items are reported under voxtok.losses.distill.
logger = logging.getLogger("voxtok.losses.distill")


class LMDistillation(Distillation):
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
        teacher: hf.ModelSource | nn.Module,
        student_dim: int,
        *,
        tokenizer: Any = None,
        layer: hf.Layer = -1,
        loss: LossKind = "d-axis",
        placement: Literal["spread", "pad"] = "spread",
        missing: Literal["error", "skip"] = "error",
        teacher_dim: int | None = None,
        projection: nn.Module | None = None,
        name: str | None = None,
    ) -> None:
        if placement not in ("spread", "pad"):
            raise ValueError(f"placement must be 'spread' or 'pad'; got {placement!r}")
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip'; got {missing!r}")
        model, tok, loaded_name = hf.load_pretrained(
            teacher, tokenizer=tokenizer is None and not isinstance(teacher, nn.Module)
        )
        tokenizer = tokenizer if tokenizer is not None else tok
        if tokenizer is None:
            raise ValueError("a teacher given as an nn.Module needs its tokenizer: pass tokenizer=")
        super().__init__(model, name=name or loaded_name, student_dim=student_dim, teacher_dim=teacher_dim,
                         projection=projection, layer=layer, loss=loss)  # fmt: skip
        self.tokenizer = tokenizer
        self.placement = placement
        self.missing = missing
        self.skipped = 0
        cfg = getattr(model, "config", None)
        self.max_tokens = int(getattr(cfg, "max_position_embeddings", 512) or 512)

    def _run(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        device = next(self.teacher.parameters(), input_ids).device
        out = self.teacher(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), output_hidden_states=True
        )
        feats = hf.select_layer(out.hidden_states, self.layer).float()
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
        fmask = frame_mask(mask, latents)
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
