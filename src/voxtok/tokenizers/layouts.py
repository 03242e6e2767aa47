"""Layouts: codec codes ``[Q, T]`` <-> language-model ids, each with an exact inverse.

One id space serves every layout: codebook ``q``'s code ``k`` is ``offset + sum(K[:q]) + k`` (per-codebook
offsets, as Orpheus and codec-bpe lay SNAC / EnCodec codes into one vocabulary), and three special ids follow the
audio ids: ``audio_start``, ``audio_end`` and ``audio_pad``. ``vocab_size = sum(K) + 3``; an LM's embedding
needs ``offset + vocab_size`` rows. The layouts differ only in how they arrange the ids:

- ``flatten``: frame by frame, codebook 0 first (``[Q * T]``), for text-style LMs (Orpheus, Llasa).
- ``delay``: ``Q`` parallel streams, stream ``q`` shifted right by ``delays[q]`` steps (MusicGen's pattern is
  ``delays = [0, 1, ..., Q-1]``; Moshi delays its acoustic codebooks by one: ``[0, 1, 1, ...]``), the gaps
  filled with the pad id: ``[Q, T + max(delays)]``.
- ``parallel``: ``[Q, T]``, one stream per codebook.
- ``first``: codebook 0 only, ``[T]`` (semantic-token LMs).

Reading ids back is strict: every id is checked against what the layout puts at its position, and an error
names the position (``ids[5]`` or ``ids[q, step]``), the value and what belongs there. ``Layout.reader()`` reads
ids chunk by chunk as an LM emits them (the streaming decoder uses it); ``from_ids`` is the same reader run over
a whole sequence, so offline and streaming checks cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

LAYOUTS = ("flatten", "delay", "parallel", "first")
SPECIALS = ("audio_start", "audio_end", "audio_pad")

_PAD = -1  # expected-codebook marker: the pad id belongs here
_NONE = -2  # expected-codebook marker: nothing may be here (past the end of a delay stream's tail)


@dataclass(frozen=True)
class Layout:
    """How codes of codebooks with ``codebook_sizes`` become ids at ``offset``.

    Args:
        kind: one of ``LAYOUTS``.
        codebook_sizes: ``K_q`` of each codebook the id space holds (the tokenizer's ``n_q`` codebooks).
        offset: the first id (the size of the text vocabulary the audio ids follow).
        delays: ``delay`` layout only: steps each codebook's stream is shifted by; default ``0, 1, ..., Q-1``.
            Non-negative, the smallest 0.
    """

    kind: str
    codebook_sizes: tuple[int, ...]
    offset: int = 0
    delays: tuple[int, ...] | None = None
    codebook_offsets: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {self.kind!r}")
        sizes = tuple(int(k) for k in self.codebook_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"codebook_sizes must be one or more positive sizes; got {list(self.codebook_sizes)}")
        if int(self.offset) < 0:
            raise ValueError(f"offset must be >= 0; got {self.offset}")
        object.__setattr__(self, "codebook_sizes", sizes)
        object.__setattr__(self, "offset", int(self.offset))
        starts, total = [], self.offset
        for k in sizes:
            starts.append(total)
            total += k
        object.__setattr__(self, "codebook_offsets", tuple(starts))
        if self.kind == "delay":
            delays = tuple(range(len(sizes))) if self.delays is None else tuple(int(d) for d in self.delays)
            if len(delays) != len(sizes) or min(delays) != 0:
                raise ValueError(f"delays must give one step count >= 0 per codebook ({len(sizes)}), the smallest 0;"
                                 f" got {list(self.delays or [])}")
            object.__setattr__(self, "delays", delays)
        elif self.delays is not None:
            raise ValueError(f"delays belong to the delay layout; got delays={list(self.delays)} for {self.kind!r}")

    # ---------------------------------------------------------------------------------------------------------
    # the id space

    @property
    def n_q(self) -> int:
        """Codebooks in the id space (the codes ``to_ids`` takes have this many)."""
        return len(self.codebook_sizes)

    @property
    def out_q(self) -> int:
        """Codebooks ``from_ids`` returns: 1 for ``first``, ``n_q`` otherwise."""
        return 1 if self.kind == "first" else self.n_q

    @property
    def audio_size(self) -> int:
        return sum(self.codebook_sizes)

    @property
    def audio_start_id(self) -> int:
        return self.offset + self.audio_size

    @property
    def audio_end_id(self) -> int:
        return self.offset + self.audio_size + 1

    @property
    def pad_id(self) -> int:
        return self.offset + self.audio_size + 2

    @property
    def vocab_size(self) -> int:
        """Ids the layout uses: every audio id plus the three special ids (``[offset, offset + vocab_size)``)."""
        return self.audio_size + len(SPECIALS)

    @property
    def is_2d(self) -> bool:
        """``delay`` and ``parallel`` give ``[Q, steps]`` streams; ``flatten`` and ``first`` one sequence."""
        return self.kind in ("delay", "parallel")

    @property
    def max_delay(self) -> int:
        return max(self.delays) if self.kind == "delay" else 0

    def num_steps(self, frames: int, add_special: bool = False) -> int:
        """Length of the ids of ``frames`` frames (the last axis for ``delay`` / ``parallel``)."""
        n = {"flatten": frames * self.n_q, "first": frames, "parallel": frames}.get(self.kind, frames + self.max_delay)
        return n + 2 * add_special

    def describe(self, value: int) -> str:
        """What id ``value`` is: ``codebook 1 code 7``, ``audio_end``, or outside the layout's ids."""
        v = int(value)
        if v >= self.audio_start_id and v < self.offset + self.vocab_size:
            return SPECIALS[v - self.audio_start_id]
        for q, (start, k) in enumerate(zip(self.codebook_offsets, self.codebook_sizes, strict=True)):
            if start <= v < start + k:
                return f"codebook {q} code {v - start}"
        return f"outside the tokenizer's ids [{self.offset}, {self.offset + self.vocab_size})"

    def expected(self, q: int) -> str:
        """What belongs where codebook ``q`` (or ``_PAD`` / ``_NONE``) is expected, for error messages."""
        if q == _PAD:
            return f"the pad id {self.pad_id}"
        if q == _NONE:
            return "audio_end or nothing (every stream has ended)"
        lo = self.codebook_offsets[q]
        return f"a codebook-{q} id in [{lo}, {lo + self.codebook_sizes[q]})"

    # ---------------------------------------------------------------------------------------------------------
    # codes -> ids

    def check_codes(self, codes: Tensor | Sequence) -> Tensor:
        """``codes [Q, T]`` or ``[B, Q, T]`` as int64, with ``Q == n_q`` and every code in its codebook's range."""
        c = torch.as_tensor(codes)
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor; got dtype {c.dtype}")
        if c.dim() not in (2, 3) or c.shape[-2] != self.n_q:
            raise ValueError(f"codes must be [Q, T] or [B, Q, T] with Q = {self.n_q} (this tokenizer's n_q); got "
                             f"shape {tuple(c.shape)}: codes of another codec or n_q? (an RVQ prefix is codes[:n_q])")
        c = c.long()
        sizes = torch.tensor(self.codebook_sizes, device=c.device)[:, None]
        bad = (c < 0) | (c >= sizes)
        if bad.any():
            where = [int(i) for i in bad.nonzero()[0]]
            q = where[-2]
            raise ValueError(f"codes[{', '.join(map(str, where))}] = {int(c[tuple(where)])} is outside codebook {q}'s "
                             f"range [0, {self.codebook_sizes[q]}): codes of another codec?")
        return c

    def to_ids(self, codes: Tensor | Sequence, add_special: bool = False) -> Tensor:
        """Codes ``[Q, T]`` (or ``[B, Q, T]``) -> ids: ``flatten`` ``[Q*T]``, ``first`` ``[T]``, ``parallel``
        ``[Q, T]``, ``delay`` ``[Q, T + max(delays)]`` (with a leading batch axis for batched codes).

        ``add_special`` puts ``audio_start`` before and ``audio_end`` after (a column of them for 2-D layouts).
        """
        c = self.check_codes(codes)
        ids = c + torch.tensor(self.codebook_offsets, device=c.device)[:, None]
        if self.kind == "flatten":
            ids = ids.transpose(-1, -2).reshape(*ids.shape[:-2], -1)
        elif self.kind == "first":
            ids = ids[..., 0, :]
        elif self.kind == "delay":
            t = ids.shape[-1]
            out = ids.new_full((*ids.shape[:-1], t + self.max_delay), self.pad_id)
            for i, d in enumerate(self.delays):
                out[..., i, d : d + t] = ids[..., i, :]
            ids = out
        if add_special:
            edge = (*ids.shape[:-1], 1)
            ids = torch.cat([ids.new_full(edge, self.audio_start_id), ids, ids.new_full(edge, self.audio_end_id)], -1)
        return ids.contiguous()

    # ---------------------------------------------------------------------------------------------------------
    # ids -> codes

    def reader(self) -> LayoutReader:
        """An incremental reader: ``push`` ids chunk by chunk, get the frames they complete."""
        return _StepReader(self) if self.is_2d else _SequenceReader(self)

    def from_ids(self, ids: Tensor | Sequence) -> Tensor:
        """The exact inverse of ``to_ids``: ids of one item (or a batch with a leading axis) -> codes ``[Q, T]``.

        An optional leading ``audio_start`` and trailing ``audio_end`` (columns for 2-D layouts) are accepted.
        ``first`` returns ``[1, T]``, on the device of ``ids``. Raises ``ValueError`` naming the first misplaced
        id.
        """
        x = _as_ids(ids)
        item_dim = 2 if self.is_2d else 1
        if x.ndim == item_dim + 1:
            out = []
            for b in range(x.shape[0]):
                try:
                    out.append(self.from_ids(x[b]))
                except ValueError as e:
                    raise ValueError(f"item {b}: {e}") from None
            return torch.stack(out) if out else torch.zeros((0, self.out_q, 0), dtype=torch.long)
        if x.ndim != item_dim or (self.is_2d and x.shape[0] != self.n_q):
            want = f"[{self.n_q}, steps]" if self.is_2d else "[length]"
            raise ValueError(f"{self.kind} ids must be {want} (or batched with a leading axis); "
                             f"got shape {tuple(x.shape)}")
        r = self.reader()
        codes = r.push(x)
        r.finish(strict=True)
        return codes.to(ids.device) if isinstance(ids, Tensor) else codes


def _as_ids(ids: Tensor | Sequence | int) -> np.ndarray:
    """Ids as an int64 numpy array (readers work in numpy: an LM pushes one id at a time, and numpy's per-call cost
    on tiny arrays is a fraction of torch's)."""
    if isinstance(ids, Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"ids must be integers; got dtype {ids.dtype}")
        return ids.detach().cpu().numpy().astype(np.int64, copy=False)
    x = np.asarray(ids)
    if x.dtype.kind not in "iu" and x.size:  # an empty list is float64 to numpy, and fine
        raise ValueError(f"ids must be integers; got dtype {x.dtype}")
    return x.astype(np.int64, copy=False)


class LayoutReader:
    """Reads a layout's ids incrementally. ``push(ids)`` returns the codes ``[Q, n]`` of the ``n`` frames the ids
    complete; ``finish()`` ends the sequence and returns how many frames were left incomplete (an LM stopped
    mid-frame), raising instead when ``strict``. Ids after ``audio_end`` are refused. A refused chunk leaves the
    reader as it was."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.frames = 0  # frames returned so far
        self.ended = False
        # Lookup tables indexed by an expected codebook: 0..Q-1, then _PAD (-> Q) and _NONE (-> Q+1).
        self._lo = np.array(layout.codebook_offsets + (layout.pad_id, 0), dtype=np.int64)
        self._size = np.array(layout.codebook_sizes + (1, 0), dtype=np.int64)
        self._offsets = np.array(layout.codebook_offsets, dtype=np.int64)[:, None]

    def push(self, ids: Tensor | Sequence | int) -> Tensor:
        raise NotImplementedError

    def finish(self, strict: bool = False) -> int:
        raise NotImplementedError

    def _check(self, ids: np.ndarray, expect: np.ndarray, where: Callable[[int], str],
               note: Callable[[int], str] | None = None) -> None:
        """Raise naming the first id (in reading order) that is not what ``expect`` says (a codebook index,
        ``_PAD`` or ``_NONE``). ``where(i)`` formats the position of flat index ``i``; ``note(i)`` may explain
        why a pad belongs there."""
        lay = self.layout
        slot = np.where(expect >= 0, expect, lay.n_q - 1 - expect)
        lo = self._lo[slot]
        bad = ((ids < lo) | (ids >= lo + self._size[slot])).reshape(-1)
        if bad.any():
            i = int(bad.argmax())
            v, e = int(ids.reshape(-1)[i]), int(expect.reshape(-1)[i])
            extra = note(i) if note is not None and (e < 0 or v == lay.pad_id) else ""
            raise ValueError(f"{where(i)} = {v} ({lay.describe(v)}); expected {lay.expected(e)}{extra}")


class _SequenceReader(LayoutReader):
    """``flatten`` (codebooks 0..Q-1 in turn) and ``first`` (codebook 0 only): one id per position."""

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.cycle = 1 if layout.kind == "first" else layout.n_q
        self.pos = 0  # ids consumed, specials included: positions in errors are indices into the whole sequence
        self.buf = np.zeros(0, dtype=np.int64)  # ids of the frame in progress

    def push(self, ids: Tensor | Sequence | int) -> Tensor:
        # State changes only once every check has passed, so a refused chunk leaves the reader as it was.
        lay = self.layout
        x = _as_ids(ids).reshape(-1)
        pos = self.pos
        if self.ended and x.size:
            raise ValueError(f"ids[{pos}] = {int(x[0])} comes after audio_end")
        if pos == 0 and x.size and int(x[0]) == lay.audio_start_id:
            x, pos = x[1:], 1
        is_end = x == lay.audio_end_id
        end = int(is_end.argmax()) if is_end.any() else None
        if end is not None:
            if end + 1 < x.size:
                raise ValueError(f"ids[{pos + end + 1}] = {int(x[end + 1])} comes after audio_end")
            x = x[:end]
        n_audio = self.frames * self.cycle + self.buf.size
        expect = np.arange(n_audio, n_audio + x.size) % self.cycle
        self._check(x, expect, lambda i: f"ids[{pos + i}]")
        buf = np.concatenate([self.buf, x])
        n = buf.size // self.cycle
        if end is not None and buf.size % self.cycle:
            raise ValueError(f"ids[{pos + x.size}] = {lay.audio_end_id} (audio_end) inside frame "
                             f"{self.frames + n}, after {buf.size % self.cycle} of its {self.cycle} ids")
        self.pos = pos + x.size + (end is not None)
        self.buf = buf[n * self.cycle :]
        self.frames += n
        self.ended = end is not None
        codes = buf[: n * self.cycle].reshape(n, self.cycle).T - self._offsets[: self.cycle]
        return torch.from_numpy(np.ascontiguousarray(codes))

    def finish(self, strict: bool = False) -> int:
        partial = int(self.buf.size > 0)
        if partial and strict:
            raise ValueError(f"the ids end inside frame {self.frames}: {self.buf.size} of its {self.cycle} ids "
                             f"(a {self.layout.kind} sequence holds {self.cycle} ids per frame)")
        return partial


class _StepReader(LayoutReader):
    """``delay`` and ``parallel`` (a delay pattern whose delays are all 0 and has no pads): ``[Q, steps]``."""

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        q = layout.n_q
        self.delays = np.array(layout.delays if layout.kind == "delay" else (0,) * q, dtype=np.int64)
        self.max_delay = int(self.delays.max())
        self.col = 0  # columns consumed, specials included (positions in errors)
        self.steps = 0  # audio steps consumed
        self.length: int | None = None  # T, once a pad shows where the streams end
        self.ended_by = ""  # which pad set `length`, for error messages
        self.buf = np.zeros((q, 0), dtype=np.int64)  # steps from frame `self.frames` on

    def _expect(self, start: int, n: int, length: int | None) -> np.ndarray:
        """Expected codebook (or ``_PAD`` / ``_NONE``) at audio steps ``start .. start+n-1`` of each stream."""
        s = np.arange(start, start + n)[None, :]
        d = self.delays[:, None]
        pad = s < d
        if length is not None:
            pad = pad | (s >= length + d)
        out = np.where(pad, _PAD, np.arange(self.layout.n_q)[:, None])
        if length is not None:
            out = np.where(s >= length + self.max_delay, _NONE, out)
        return out

    def _find_length(self, x: np.ndarray, col: int) -> tuple[int | None, str]:
        """T from the first pad past a stream's delay in ``x`` (a delay pattern's streams all end at T)."""
        lay = self.layout
        if lay.kind != "delay" or self.length is not None or not x.shape[1]:
            return self.length, self.ended_by
        s = np.arange(self.steps, self.steps + x.shape[1])[None, :]
        hit = (x == lay.pad_id) & (s >= self.delays[:, None])
        if not hit.any():
            return None, ""
        ends = np.where(hit, s - self.delays[:, None], np.iinfo(np.int64).max)
        step, q = divmod(int(ends.T.argmin()), lay.n_q)  # the earliest end; ties: earliest step, lowest stream
        length = int(ends[q, step])
        misplaced = f"ids[{q}, {col + step}] = {lay.pad_id} (audio_pad) is misplaced: it ends every stream at frame " \
            f"{length}, but"
        if length < self.steps:
            # A stream with delay 0 already holds codes up to frame steps - 1 (read in an earlier chunk).
            q0 = int((self.delays == 0).argmax())
            raise ValueError(f"{misplaced} ids[{q0}, {col - 1}] already holds codebook {q0}'s code for frame "
                             f"{self.steps - 1}")
        # A code before this pad where the pad says the streams have ended: blame the pad, not the code.
        before = np.arange(self.steps, self.steps + step)[None, :]
        early = ((before >= length + self.delays[:, None]) & (x[:, :step] != lay.pad_id)).T
        if early.any():
            s2, q2 = divmod(int(early.argmax()), lay.n_q)
            v = int(x[q2, s2])
            raise ValueError(f"{misplaced} ids[{q2}, {col + s2}] = {v} ({lay.describe(v)}) comes before it")
        return length, f"the pad at ids[{q}, {col + step}] ends every stream at frame {length}"

    def push(self, ids: Tensor | Sequence) -> Tensor:
        # State changes only once every check has passed, so a refused chunk leaves the reader as it was.
        lay = self.layout
        x = _as_ids(ids)
        if x.ndim == 1 and x.shape[0] == lay.n_q:
            x = x[:, None]  # one step
        if x.ndim != 2 or x.shape[0] != lay.n_q:
            raise ValueError(f"{lay.kind} ids are [{lay.n_q}, steps] (or one step [{lay.n_q}]); got shape "
                             f"{tuple(x.shape)}")
        col = self.col
        if self.ended and x.shape[1]:
            raise ValueError(f"ids[:, {col}] comes after the audio_end column")
        if col == 0 and x.shape[1] and bool((x[:, 0] == lay.audio_start_id).all()):
            x, col = x[:, 1:], 1
        is_end = (x == lay.audio_end_id).any(0)
        end = int(is_end.argmax()) if is_end.any() else None
        if end is not None:
            if not bool((x[:, end] == lay.audio_end_id).all()):
                q = int((x[:, end] != lay.audio_end_id).argmax())
                raise ValueError(f"ids[{q}, {col + end}] = {int(x[q, end])}: audio_end must fill the whole column")
            if end + 1 < x.shape[1]:
                raise ValueError(f"ids[:, {col + end + 1}] comes after the audio_end column")
            x = x[:, :end]
        n, q_n, steps = x.shape[1], lay.n_q, self.steps
        length, ended_by = self._find_length(x, col)

        def note(i: int) -> str:
            q, step = i % q_n, steps + i // q_n
            if step < int(self.delays[q]):
                d = int(self.delays[q])
                return f" (stream {q} is delayed by {d} step{'s' if d != 1 else ''})"
            return f" ({ended_by})" if ended_by else ""

        # Checked step by step (transposed), so the first error reported is the earliest in the sequence.
        self._check(x.T, self._expect(steps, n, length).T, lambda i: f"ids[{i % q_n}, {col + i // q_n}]", note)
        done = steps + n - self.max_delay
        if end is not None and length is None and self.max_delay == 0:
            length = steps + n  # no pads in this pattern: the end column says where the streams end
        if length is not None:
            done = min(done, length)
        new = max(0, done - self.frames)
        if end is not None and (length is None or self.frames + new < length):
            raise ValueError(f"ids[:, {col + n}]: audio_end before the delay pattern is complete "
                             f"({self.frames + new} whole frames; the pads after the last frame are missing)")
        buf = np.concatenate([self.buf, x], 1)
        codes = np.take_along_axis(buf, np.arange(new)[None, :] + self.delays[:, None], 1) - self._offsets
        self.buf = buf[:, new:]
        self.col, self.steps, self.frames = col + n + (end is not None), steps + n, self.frames + new
        self.length, self.ended_by, self.ended = length, ended_by, end is not None
        return torch.from_numpy(np.ascontiguousarray(codes))

    def finish(self, strict: bool = False) -> int:
        length = self.length
        if length is None and self.max_delay == 0:
            length = self.steps
        partial = (self.steps if length is None else length) - self.frames
        if strict and (partial or self.steps < self.frames + self.max_delay):
            raise ValueError(f"the ids end before the delay pattern is complete: {self.steps} steps hold "
                             f"{self.frames} whole frames; the pads after the last frame (max delay "
                             f"{self.max_delay}) are missing")
        return partial
