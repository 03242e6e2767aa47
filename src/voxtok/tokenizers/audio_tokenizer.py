"""``AudioTokenizer``: audio <-> codec codes <-> LLM token ids, with a versioned spec (``audio_tokenizer.json``).

A codec turns audio into codes ``[Q, T]``; a ``Layout`` turns codes into ids that follow a text vocabulary; the
text tokens (``<|a{q}_{k}|>``) let a transformers tokenizer produce the same ids; ``decode_stream`` turns ids
back into audio while an LM is still emitting them. ``save_pretrained`` writes the codec and the spec side by
side, and ``from_pretrained`` refuses a spec that does not match its codec. See docs/tokenizer.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import voxtok.audio as A
from voxtok.codecs.codec import Codec
from voxtok.codecs.loading import load
from voxtok.codecs.spec import SPEC_KEYS, check_spec, codec_spec
from voxtok.tokenizers.layouts import LAYOUTS, SPECIALS, Layout
from voxtok.tokenizers.stream import StreamDecoder
from voxtok.tokenizers.text import SPECIAL_TOKENS, TOKEN_FORMAT, extend_hf_tokenizer, ids_to_text, text_to_ids

SPEC_NAME = "audio_tokenizer.json"
FORMAT_VERSION = 1
# Fields of audio_tokenizer.json beyond the codec's: they fix which id each code gets.
LAYOUT_KEYS = ("layout", "offset", "delays", "vocab_size", "codebook_offsets", "special_ids", "token_format",
               "special_tokens")
# A corpus may hold more codebooks than the tokenizer reads (an RVQ prefix); these must agree exactly.
CORPUS_KEYS = tuple(k for k in SPEC_KEYS if k not in ("n_q", "codebook_sizes"))

AudioItem = str | Path | np.ndarray | Tensor | tuple


@dataclass
class AudioBatch:
    """A padded batch of LM ids from ``AudioTokenizer.collate``.

    Attributes:
        ids: ``[B, L]`` (``flatten`` / ``first``) or ``[B, Q, L]`` (``delay`` / ``parallel``), padded with the pad
            id.
        attention_mask: ``[B, L]`` bool, True on each item's ids (``.long()`` gives transformers' 0 / 1 form).
        lengths: ``[B]`` ids (steps, for 2-D layouts) per item, special ids included.
        frames: ``[B]`` codec frames per item.
    """

    ids: Tensor
    attention_mask: Tensor
    lengths: Tensor
    frames: Tensor


class AudioTokenizer:
    """Audio <-> codes <-> LM ids for one codec, layout and offset.

    Args:
        codec: a ``voxtok.Codec``.
        layout: ``flatten``, ``delay``, ``parallel`` or ``first`` (see ``voxtok.tokenizers.layouts``).
        n_q: codebooks used (an RVQ prefix); default all, and 1 for ``first``.
        offset: the first audio id, usually ``len(text_tokenizer)``, so audio ids follow the text vocabulary.
        delays: ``delay`` layout only: each codebook's shift in steps (default ``0, 1, ..., Q-1``).
    """

    def __init__(self, codec: Codec, layout: str = "flatten", n_q: int | None = None, offset: int = 0,
                 delays: Sequence[int] | None = None) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        q = int(codec.num_codebooks)
        if layout == "first":
            if n_q not in (None, 1):
                raise ValueError(f"layout 'first' carries codebook 0 only; n_q must be 1 (got {n_q})")
            n_q = 1
        n_q = q if n_q is None else int(n_q)
        if not 1 <= n_q <= q:
            raise ValueError(f"n_q must be in [1, {q}] for {codec.name or 'this codec'}; got {n_q}")
        self.codec = codec
        self.n_q = n_q
        self.layout = layout
        self._layout = Layout(layout, tuple(codec.codebook_sizes[:n_q]), offset,
                              tuple(delays) if delays is not None else None)

    # ---------------------------------------------------------------------------------------------------------
    # facts

    @property
    def offset(self) -> int:
        return self._layout.offset

    @property
    def delays(self) -> tuple[int, ...] | None:
        return self._layout.delays

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._layout.codebook_sizes)

    @property
    def vocab_size(self) -> int:
        """Ids this tokenizer uses: ``sum(codebook_sizes) + 3``; an LM needs ``offset + vocab_size`` embeddings."""
        return self._layout.vocab_size

    @property
    def audio_start_id(self) -> int:
        return self._layout.audio_start_id

    @property
    def audio_end_id(self) -> int:
        return self._layout.audio_end_id

    @property
    def pad_id(self) -> int:
        return self._layout.pad_id

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def hop_length(self) -> int:
        return self.codec.hop_length

    def layout_of(self, layout: str | None = None) -> Layout:
        """The ``Layout`` for ``layout`` (default this tokenizer's) over this tokenizer's id space."""
        if layout is None or layout == self.layout:
            return self._layout
        delays = self.delays if layout == "delay" else None
        return Layout(layout, self._layout.codebook_sizes, self.offset, delays)

    def __repr__(self) -> str:
        return (f"AudioTokenizer(codec={self.codec.name!r}, layout={self.layout!r}, n_q={self.n_q}, "
                f"offset={self.offset}, vocab_size={self.vocab_size})")

    # ---------------------------------------------------------------------------------------------------------
    # audio <-> codes

    def encode(self, items: Sequence[AudioItem] | AudioItem, sample_rate: int | Sequence[int | None] | None = None,
               batch_size: int = 16) -> list[Tensor]:
        """Audio -> codes, one ``[Q, T]`` int64 tensor per item (on the codec's device).

        Args:
            items: paths, arrays or tensors (``[S]`` or ``[C, S]``, float in [-1, 1]), or ``(audio, rate)`` pairs;
                any rate and channel count (resampled to the codec's rate and mixed to mono as ``Codec.encode``
                does). A single item is taken as a list of one.
            sample_rate: the rate of array / tensor items (one for all, or one per item); default the codec's.
            batch_size: items per codec call. Causal codecs batch items of any length (sorted by length, padded);
                non-causal ones only items of equal length (after resampling).

        Each item's codes equal ``Codec.encode`` of that item alone, for every codec. ``T = ceil(samples / hop)``
        at the codec's rate.

        Raises:
            voxtok.AudioError: an item is unreadable, empty or holds NaN / Inf (named by its index or path).
        """
        self._not_streaming()
        if isinstance(items, (str, Path, np.ndarray, Tensor)):
            items = [items]
        items = list(items)
        rates = list(sample_rate) if isinstance(sample_rate, (list, tuple)) else [sample_rate] * len(items)
        if len(rates) != len(items):
            raise ValueError(f"sample_rate gives {len(rates)} rates for {len(items)} items")
        ref = next(self.codec.parameters(), None)
        device, dtype = (ref.device, ref.dtype) if ref is not None else (torch.device("cpu"), torch.float32)
        waves = [self._load(item, rate, i, device, dtype) for i, (item, rate) in enumerate(zip(items, rates,
                                                                                                strict=True))]
        out: list[Tensor | None] = [None] * len(waves)
        for idx in self._batches([w.shape[-1] for w in waves], batch_size):
            lengths = torch.tensor([waves[i].shape[-1] for i in idx])
            batch = waves[idx[0]].new_zeros(len(idx), waves[idx[0]].shape[0], int(lengths.max()))
            for j, i in enumerate(idx):
                batch[j, :, : waves[i].shape[-1]] = waves[i]
            tokens = self.codec.encode(batch, lengths=lengths, n_q=self.n_q)
            for j, i in enumerate(idx):
                out[i] = tokens.codes[j, :, : int(tokens.lengths[j])].clone()
        return out  # type: ignore[return-value]

    def _load(self, item: AudioItem, rate: int | None, i: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """One item -> ``[channels, S]`` at the codec's rate, in the codec's order of steps (mix, then resample)."""
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[1], (int, np.integer)):
                raise ValueError(f"item {i}: a tuple item must be (audio, sample_rate); got {len(item)} elements")
            item, rate = item
        name = f"item {i}"
        if isinstance(item, (str, Path)):
            x, rate = A.read(item)
            name = f"item {i} ({item})"
        elif isinstance(item, (np.ndarray, Tensor)):
            x = torch.from_numpy(np.ascontiguousarray(item)) if isinstance(item, np.ndarray) else item
            if not x.is_floating_point():
                raise ValueError(f"{name}: audio must be floating point in [-1, 1]; got dtype {x.dtype} (scale PCM "
                                 f"to [-1, 1] first, as voxtok.audio.read does)")
        else:
            raise ValueError(f"{name}: expected a path, array, tensor or (audio, sample_rate); got "
                             f"{type(item).__name__}")
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2 or x.shape[0] > 16:
            raise ValueError(f"{name}: audio must be [S] or [C, S] (channels first, at most 16); got shape "
                             f"{tuple(x.shape)} (soundfile's [S, C] arrays need a transpose)")
        A.check_audio(x, name=name)
        if x.shape[0] != self.codec.channels and self.codec.channels == 1:
            x = A.to_mono(x)
        x = x.to(device, dtype)
        if rate is not None and int(rate) != self.codec.sample_rate:
            x = A.resample(x, int(rate), self.codec.sample_rate)
        return x

    def decode(self, codes: Sequence[Tensor] | Tensor, batch_size: int = 16) -> list[Tensor]:
        """Codes (a list of ``[Q, T]``, or ``[B, Q, T]``) -> audio, one ``[C, T * hop]`` tensor per item at the
        codec's rate. Causal codecs decode padded batches; non-causal ones batch only items of equal length, so
        every item's audio equals decoding it alone."""
        self._not_streaming()
        if isinstance(codes, Tensor) and codes.dim() == 2:
            codes = [codes]
        items = [self._check_item(c, i) for i, c in enumerate(codes)]
        out: list[Tensor | None] = [None] * len(items)
        hop = self.hop_length
        ref = next(self.codec.parameters(), None)
        device = ref.device if ref is not None else torch.device("cpu")
        for idx in self._batches([c.shape[-1] for c in items], batch_size):
            t = max(items[i].shape[-1] for i in idx)
            if t == 0:
                for i in idx:
                    out[i] = torch.zeros(self.codec.channels, 0, device=device)
                continue
            batch = torch.zeros(len(idx), self.n_q, t, dtype=torch.long, device=device)
            for j, i in enumerate(idx):
                batch[j, :, : items[i].shape[-1]] = items[i]
            audio = self.codec.decode(batch)
            for j, i in enumerate(idx):
                out[i] = audio[j, :, : items[i].shape[-1] * hop].clone()
        return out  # type: ignore[return-value]

    def _batches(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        """Item indices per codec call, longest first. A causal codec's output for an item does not depend on what
        follows it, so any items share a padded batch; a non-causal codec's last frames can see the padding (a
        reflection pad, attention, per-sequence statistics), so it batches only items of equal length. Either way
        each item's result equals processing it alone."""
        step = max(1, int(batch_size))
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        if self.codec.causal:
            groups = [order]
        else:
            by_len: dict[int, list[int]] = {}
            for i in order:
                by_len.setdefault(lengths[i], []).append(i)
            groups = list(by_len.values())
        return [g[start : start + step] for g in groups for start in range(0, len(g), step)]

    def _check_item(self, codes: Tensor, i: int) -> Tensor:
        try:
            c = self._layout.check_codes(codes)
        except ValueError as e:
            raise ValueError(f"item {i}: {e}") from None
        if c.dim() != 2:
            raise ValueError(f"item {i}: codes must be [Q, T]; got shape {tuple(c.shape)}")
        return c

    def _not_streaming(self) -> None:
        if self.codec.is_streaming:
            raise RuntimeError("the codec is in streaming mode (an open decode_stream or codec.streaming()); "
                               "flush() or close() the stream first")

    # ---------------------------------------------------------------------------------------------------------
    # codes <-> ids

    def to_llm_ids(self, codes: Tensor, layout: str | None = None, add_special: bool = False) -> Tensor:
        """Codes ``[Q, T]`` (or ``[B, Q, T]``) -> LM ids in ``layout`` (default this tokenizer's):
        ``flatten`` ``[Q*T]``, ``first`` ``[T]``, ``parallel`` ``[Q, T]``, ``delay`` ``[Q, T + max(delays)]``.
        ``add_special`` wraps them in ``audio_start`` / ``audio_end`` (columns for 2-D layouts)."""
        return self.layout_of(layout).to_ids(codes, add_special)

    def from_llm_ids(self, ids: Tensor | Sequence[int], layout: str | None = None) -> Tensor:
        """The exact inverse of ``to_llm_ids`` (special ids at the ends accepted): ids -> codes ``[Q, T]``.

        Raises ``ValueError`` naming the position and value of an id outside the audio range, of the wrong
        codebook, a misplaced pad or special id, or a partial frame."""
        return self.layout_of(layout).from_ids(ids)

    def to_text(self, codes: Tensor, layout: str | None = None, add_special: bool = False) -> str:
        """Codes ``[Q, T]`` -> one token string per id, e.g. ``<|a0_17|><|a1_3|>...`` (2-D layouts step by step)."""
        lay = self.layout_of(layout)
        return ids_to_text(lay.to_ids(codes, add_special), lay)

    def from_text(self, text: str, layout: str | None = None) -> Tensor:
        """The inverse of ``to_text``; whitespace between tokens is ignored."""
        lay = self.layout_of(layout)
        return lay.from_ids(text_to_ids(text, lay))

    def extend_hf_tokenizer(self, tokenizer: Any) -> dict[str, int]:
        """Add the audio tokens and ``<|audio_start|>`` / ``<|audio_end|>`` / ``<|audio_pad|>`` to a transformers
        tokenizer, at this tokenizer's ids; returns ``{token: id}``.

        Needs ``offset == len(tokenizer)``. Afterwards ``tokenizer(tok.to_text(codes), add_special_tokens=False)``
        gives exactly ``tok.to_llm_ids(codes)`` (read step by step for 2-D layouts); without
        ``add_special_tokens=False`` the tokenizer adds its own specials (BERT's ``[CLS]`` / ``[SEP]``) around them.
        Resize the model's embeddings to ``len(tokenizer)`` afterwards.
        """
        return extend_hf_tokenizer(tokenizer, self._layout)

    def collate(self, codes: Sequence[Tensor], layout: str | None = None, add_special: bool = True,
                padding_side: str = "right") -> AudioBatch:
        """Codes of several items -> a padded batch of LM ids (see ``AudioBatch``).

        ``add_special`` (default on, so an LM learns where audio ends) wraps each item in ``audio_start`` /
        ``audio_end``. ``padding_side`` ``"left"`` suits batched generation."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right'; got {padding_side!r}")
        lay = self.layout_of(layout)
        items = [self._check_item(c, i) for i, c in enumerate(codes)]
        seqs = [lay.to_ids(c, add_special) for c in items]
        lengths = torch.tensor([s.shape[-1] for s in seqs], dtype=torch.long)
        frames = torch.tensor([c.shape[-1] for c in items], dtype=torch.long)
        width = int(lengths.max()) if len(seqs) else 0
        lead = (lay.n_q,) if lay.is_2d else ()
        ids = torch.full((len(seqs), *lead, width), lay.pad_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), width, dtype=torch.bool)
        for b, s in enumerate(seqs):
            n = s.shape[-1]
            sl = slice(0, n) if padding_side == "right" else slice(width - n, width)
            ids[b, ..., sl] = s.cpu()
            mask[b, sl] = True
        return AudioBatch(ids=ids, attention_mask=mask, lengths=lengths, frames=frames)

    def decode_stream(self, frames_per_chunk: int = 1, layout: str | None = None) -> StreamDecoder:
        """A ``StreamDecoder`` for ids in ``layout`` (default this tokenizer's): ``push(ids) -> list[Tensor]``,
        ``flush() -> Tensor``. Causal codecs only (``ValueError`` naming the codec otherwise)."""
        return StreamDecoder(self.codec, self.layout_of(layout), frames_per_chunk)

    # ---------------------------------------------------------------------------------------------------------
    # the spec

    def spec(self) -> dict[str, Any]:
        """The content of ``audio_tokenizer.json``: the codec's token fields (``codecs.spec.codec_spec``)
        plus the layout, offset, delays, vocab size, each codebook's first id, the special ids and token strings."""
        lay = self._layout
        out = {"format": "voxtok.audio_tokenizer", "format_version": FORMAT_VERSION}
        out.update(codec_spec(self.codec, self.n_q))
        out.update({
            "layout": self.layout,
            "offset": self.offset,
            "delays": list(lay.delays) if lay.delays is not None else None,
            "vocab_size": lay.vocab_size,
            "codebook_offsets": list(lay.codebook_offsets),
            "special_ids": {name: lay.audio_start_id + i for i, name in enumerate(SPECIALS)},
            "token_format": TOKEN_FORMAT,
            "special_tokens": dict(SPECIAL_TOKENS),
        })
        return out

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the codec (``config.json`` + ``model.safetensors``) and ``audio_tokenizer.json`` into ``path``."""
        path = Path(path)
        self.codec.save_pretrained(path)
        (path / SPEC_NAME).write_text(json.dumps(self.spec(), indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, layout: str | None = None, n_q: int | None = None,
                        offset: int | None = None, device: str | torch.device | None = None,
                        delays: Sequence[int] | None = None) -> AudioTokenizer:
        """A tokenizer from a ``save_pretrained`` directory, a saved codec directory or a preset name.

        With an ``audio_tokenizer.json`` beside the codec, ``layout`` / ``n_q`` / ``offset`` / ``delays`` default to
        its values, any given must agree with it, and the spec must match the codec (weights hash, rates,
        codebooks) and this voxtok's id assignment; a mismatch raises ``ValueError`` naming each field. Without
        one: ``layout="flatten"``, all codebooks, ``offset=0``.
        """
        codec = load(name_or_dir).eval()
        if device is not None:
            codec.to(device)
        spec_file = Path(name_or_dir) / SPEC_NAME
        if not spec_file.is_file():
            return cls(codec, layout or "flatten", n_q, 0 if offset is None else offset, delays)
        try:
            saved = json.loads(spec_file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{spec_file}: not valid JSON ({e})") from e
        version = saved.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{spec_file}: format_version {version!r} is not one this voxtok reads "
                             f"(<= {FORMAT_VERSION}); upgrade voxtok")
        given = {"layout": layout, "n_q": n_q, "offset": offset, "delays": list(delays) if delays else None}
        clash = [f"{k}={v!r} (the spec says {saved.get(k)!r})" for k, v in given.items()
                 if v is not None and v != saved.get(k)]
        if clash:
            raise ValueError(f"{spec_file} fixes the ids; got {', '.join(clash)}: drop the argument, or build a new "
                             f"AudioTokenizer(voxtok.load({str(name_or_dir)!r}), ...) for other ids")
        try:
            tok = cls(codec, saved["layout"], saved["n_q"], saved["offset"], saved.get("delays"))
        except KeyError as e:
            raise ValueError(f"{spec_file}: missing field {e}") from None
        check_spec(tok.spec(), saved, str(spec_file), keys=SPEC_KEYS + LAYOUT_KEYS)
        return tok

    def check_corpus(self, manifest: Mapping[str, Any] | str | Path) -> None:
        """Check that a corpus (an extraction's ``manifest.json``, its directory, or the dict) holds tokens of this
        tokenizer's codec: same codec hash, rates and hop, and at least ``n_q`` codebooks of the same sizes (a
        corpus with more codebooks is read through its first ``n_q``). Raises ``ValueError`` naming each field."""
        where = "manifest"
        if not isinstance(manifest, Mapping):
            p = Path(manifest)
            p = p / "manifest.json" if p.is_dir() else p
            where = str(p)
            try:
                manifest = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{p}: not a readable manifest ({e})") from e
        mine = self.spec()
        check_spec(mine, manifest, where, keys=CORPUS_KEYS)
        found = list(manifest.get("codebook_sizes") or [])
        if found[: self.n_q] != mine["codebook_sizes"] or int(manifest.get("n_q", 0)) < self.n_q:
            raise ValueError(f"{where} holds n_q={manifest.get('n_q')!r} codebooks of sizes {found}; this tokenizer "
                             f"reads the first {self.n_q} of sizes {mine['codebook_sizes']}")
