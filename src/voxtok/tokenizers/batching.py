"""The data side of extraction: length-bucketed batches and the worker that reads, mixes and resamples one
utterance.

Batches are planned over the whole input and dealt to ranks (``extraction``), never from what is left to do: two
ranks that read the output folder at different moments still agree on who owns which id, so an id is never
encoded by two ranks or by none, and a batch holds the same utterances in every run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from torch import Tensor

import voxtok.audio as A
from voxtok.tokenizers.manifest import Record

# A manifest's segment may end a little past the file (rounded times): up to this many seconds is clamped.
SEGMENT_END_SLACK = 0.05


def probe_duration(rec: Record) -> float:
    """Seconds of audio ``rec`` should hold, from the manifest or the file header (0.0 when unreadable: the
    worker that reads it then records why)."""
    if rec.duration is not None:
        return max(0.0, rec.duration)
    try:
        info = sf.info(rec.path)
        total = info.frames / info.samplerate
    except Exception:  # anything: an unreadable file is reported by the reader, with its reason
        return 0.0
    return max(0.0, total - (rec.start or 0.0))


def probe_durations(records: Sequence[Record], threads: int = 8) -> list[float]:
    """``probe_duration`` of each record; header reads are I/O-bound, so they run in a thread pool."""
    if len(records) < 64:
        return [probe_duration(r) for r in records]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(probe_duration, records, chunksize=64))


def make_batches(durations: Sequence[float], batch_seconds: float) -> list[list[int]]:
    """Indices grouped into batches, longest first, each holding at most ``batch_seconds`` of *padded* audio.

    Sorting by length keeps padding small; a batch is ``n`` items times the longest one, which is what the codec
    computes. An item longer than ``batch_seconds`` goes alone (the codec chunks it if it is very long).
    """
    if not batch_seconds > 0:
        raise ValueError(f"batch_seconds must be > 0; got {batch_seconds}")
    order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0.0
    for i in order:
        d = max(durations[i], 1e-3)
        if cur and (len(cur) + 1) * max(longest, d) > batch_seconds:
            batches.append(cur)
            cur, longest = [], 0.0
        cur.append(i)
        longest = max(longest, d)
    if cur:
        batches.append(cur)
    return batches


def read_segment(path: str | Path, start: float | None, end: float | None) -> tuple[Tensor, int]:
    """Read ``[start, end)`` seconds of ``path``: ``(audio [C, S] float32, sample_rate)``.

    Only the segment is decoded. ``end`` up to ``SEGMENT_END_SLACK`` s past the file's end is clamped.

    Raises:
        voxtok.AudioError: missing or unreadable file, a segment outside the file, fewer samples decoded than the
            header promises (truncated), or NaN / Inf samples.
    """
    p = Path(path)
    if not p.is_file():
        raise A.AudioError(f"{p}: no such file")
    start = start or 0.0
    try:
        with sf.SoundFile(str(p)) as f:
            sr, total = f.samplerate, f.frames
            a = round(start * sr)
            b = total if end is None else round(end * sr)
            if a >= total:
                raise A.AudioError(f"{p}: segment start {start} s is at or past the end of the file "
                                   f"({total / sr:.3f} s)")
            if b > total:
                if b - total > SEGMENT_END_SLACK * sr:
                    raise A.AudioError(f"{p}: segment end {end} s is past the end of the file ({total / sr:.3f} s)")
                b = total
            f.seek(a)
            data = f.read(b - a, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise A.AudioError(f"{p}: not readable as audio ({e})") from e
    if data.shape[0] < b - a:
        raise A.AudioError(f"{p}: truncated: segment needs {b - a} frames from {a}, decoded {data.shape[0]}")
    x = torch.from_numpy(data.T.copy())
    A.check_audio(x, name=f"{p} [{start}, {end}]")
    return x, int(sr)


def load_record(rec: Record, sample_rate: int) -> Tensor:
    """One utterance as the codec wants it: mono ``[S]`` float32 at ``sample_rate``.

    Mixing (mean of channels) and resampling (``voxtok.audio.resample``) are the same operations, in the same
    order, as ``Codec.encode`` applies to a file passed alone, so codes do not depend on where this ran.
    """
    for what, value in (("id", rec.id), ("path", rec.path)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise A.AudioError(f"{what} {value!r} is not valid UTF-8 and cannot be stored in Parquet") from None
    if rec.start is None and rec.end is None:
        x, sr = A.read(rec.path)
    else:
        x, sr = read_segment(rec.path, rec.start, rec.end)
    x = A.to_mono(x)
    if sr != sample_rate:
        x = A.resample(x, sr, sample_rate)
    return x[0]


def describe(e: BaseException) -> str:
    """A failure's reason for ``errors.jsonl``: ``AudioError`` messages as they are, others with their type."""
    return str(e) if isinstance(e, A.AudioError) else f"{type(e).__name__}: {e}"


class FixedBatches(torch.utils.data.Sampler):
    """A batch sampler over precomputed batches (lists of dataset indices), in order."""

    def __init__(self, batches: Sequence[Sequence[int]]) -> None:
        self.batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class UtteranceDataset(torch.utils.data.Dataset):
    """``records[i]`` read by ``load_record``; a failure comes back as ``{"index", "error"}``, never raised, so
    one bad file cannot stop a DataLoader worker. Items carry indices, not records: the main process has those."""

    def __init__(self, records: Sequence[Record], sample_rate: int) -> None:
        self.records = list(records)
        self.sample_rate = int(sample_rate)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            return {"index": i, "audio": load_record(self.records[i], self.sample_rate)}
        except Exception as e:  # recorded per file, whatever the reader raised
            return {"index": i, "error": describe(e)}


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Items -> ``{"audio": [B, 1, S] zero-padded or None, "lengths": [B], "indices": [B], "errors": [(index,
    reason)]}``."""
    ok = [it for it in items if "audio" in it]
    errors = [(it["index"], it["error"]) for it in items if "error" in it]
    if not ok:
        return {"audio": None, "lengths": None, "indices": [], "errors": errors}
    lengths = torch.tensor([it["audio"].shape[-1] for it in ok], dtype=torch.long)
    audio = torch.zeros(len(ok), 1, int(lengths.max()))
    for i, it in enumerate(ok):
        audio[i, 0, : it["audio"].shape[-1]] = it["audio"]
    return {"audio": audio, "lengths": lengths, "indices": [it["index"] for it in ok], "errors": errors}


def seconds(n: int | float) -> str:
    """Human-readable duration: ``42.0 s``, ``3.2 min``, ``1.25 h``."""
    if n < 120:
        return f"{n:.1f} s"
    if n < 7200:
        return f"{n / 60:.1f} min"
    return f"{n / 3600:.2f} h"
