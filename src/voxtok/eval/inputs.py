"""What ``voxtok eval`` reads: a folder of audio files or a manifest, as a list of utterances.

A folder is searched recursively for audio files by extension; transcripts are picked up from LibriSpeech's
``SPEAKER-CHAPTER.trans.txt`` files and from a ``.txt`` file beside an audio file with the same stem. A manifest
is JSONL (one object per line) or CSV / TSV with a header row, with the columns ``path`` (required; relative to
the manifest's folder), ``text``, ``start`` and ``end`` (seconds), and ``id``. A row or file that cannot be used
becomes a ``BadInput`` with its reason; it never stops the others (docs/eval.md).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import voxtok.audio as A

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST_EXTENSIONS = (".jsonl", ".csv", ".tsv")


@dataclass(frozen=True)
class Item:
    """One utterance to evaluate: a file, an optional segment of it (seconds) and an optional transcript."""

    id: str
    path: Path
    text: str | None = None
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class BadInput:
    """An input that was skipped: where it came from (file, or manifest and line) and why."""

    source: str
    reason: str


def read_inputs(
    source: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS
) -> tuple[list[Item], list[BadInput]]:
    """Utterances from a folder or a manifest file, and the inputs that had to be skipped.

    Args:
        source: a folder (searched recursively for ``extensions``, sorted by path) or a ``.jsonl`` / ``.csv`` /
            ``.tsv`` manifest.
        extensions: audio file suffixes a folder search takes (lower case, with the dot).

    Raises:
        ValueError: ``source`` does not exist, is an unknown kind of file, or a manifest has no ``path`` column.
    """
    source = Path(source)
    if source.is_dir():
        return _read_folder(source, tuple(e.lower() for e in extensions))
    if not source.is_file():
        raise ValueError(f"{source}: no such folder or manifest")
    suffix = source.suffix.lower()
    if suffix not in MANIFEST_EXTENSIONS:
        raise ValueError(f"{source}: a manifest must be one of {', '.join(MANIFEST_EXTENSIONS)}; got {suffix!r}")
    return _read_manifest(source)


def _read_folder(root: Path, extensions: tuple[str, ...]) -> tuple[list[Item], list[BadInput]]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    transcripts: dict[str, str] = {}
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text(errors="replace").splitlines():
            uid, _, text = line.strip().partition(" ")
            if uid and text:
                transcripts[uid] = text.strip()
    items = []
    for p in files:
        text = transcripts.get(p.stem)
        side = p.with_suffix(".txt")
        if text is None and side.is_file():
            text = side.read_text(errors="replace").strip() or None
        items.append(Item(id=p.relative_to(root).with_suffix("").as_posix(), path=p, text=text))
    return items, []


def _rows(manifest: Path) -> list[tuple[int, dict[str, str] | None, str | None]]:
    """``(line number, row, error)`` for each non-empty row of a JSONL / CSV / TSV manifest."""
    text = manifest.read_text(errors="replace")
    if manifest.suffix.lower() == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                out.append((n, None, f"not valid JSON ({e.msg})"))
                continue
            if not isinstance(row, dict):
                out.append((n, None, f"expected a JSON object; got {type(row).__name__}"))
                continue
            out.append((n, {str(k): ("" if v is None else str(v)) for k, v in row.items()}, None))
        if out and all(r is None for _, r, _ in out):
            raise ValueError(f"{manifest}: no line is a JSON object")
        return out
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
        raise ValueError(f"{manifest}: the header row must have a 'path' column; got {reader.fieldnames}")
    return [(n, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}, None)
            for n, row in enumerate(reader, 2) if any((v or "").strip() for v in row.values() if isinstance(v, str))]


def _seconds(value: str, name: str) -> float | None:
    if value == "":
        return None
    t = float(value)  # ValueError names the value
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0; got {value!r}")
    return t


def _read_manifest(manifest: Path) -> tuple[list[Item], list[BadInput]]:
    items: list[Item] = []
    bad: list[BadInput] = []
    seen: set[str] = set()
    for line, row, error in _rows(manifest):
        where = f"{manifest}:{line}"
        if row is None:
            bad.append(BadInput(where, error or "unreadable row"))
            continue
        if not row.get("path"):
            bad.append(BadInput(where, "no 'path' value"))
            continue
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        try:
            start, end = _seconds(row.get("start", ""), "start"), _seconds(row.get("end", ""), "end")
        except ValueError as e:
            bad.append(BadInput(where, str(e)))
            continue
        if start is not None and end is not None and end <= start:
            bad.append(BadInput(where, f"end ({end}) must be after start ({start})"))
            continue
        uid = row.get("id") or Path(row["path"]).with_suffix("").as_posix()
        if start is not None or end is not None:
            uid = f"{uid}@{start or 0:g}-{'' if end is None else f'{end:g}'}"
        base, k = uid, 1
        while uid in seen:  # the same file twice (or two segments with one id): keep both, apart
            k += 1
            uid = f"{base}#{k}"
        seen.add(uid)
        items.append(Item(id=uid, path=path, text=row.get("text") or None, start=start, end=end))
    return items, bad


def load_item(item: Item) -> tuple[Tensor, int]:
    """The item's audio as mono ``[S]`` float32 at the file's rate (its segment only, when it has one).

    Multichannel files are mixed to mono by averaging the channels.

    Raises:
        voxtok.AudioError: the file is unreadable, empty, non-finite, silent (every sample zero), or the segment
            lies outside it or is empty.
    """
    x, sr = A.read(item.path)
    x = x.mean(dim=0)
    if item.start is not None or item.end is not None:
        n = x.shape[-1]
        a = round((item.start or 0.0) * sr)
        b = n if item.end is None else round(item.end * sr)
        if a >= n or b - a <= 0:
            raise A.AudioError(f"{item.path}: segment {item.start}-{item.end} s lies outside the file "
                               f"({n / sr:.3f} s)")
        if b > n:
            raise A.AudioError(f"{item.path}: segment end {item.end} s is past the end of the file ({n / sr:.3f} s)")
        x = x[a:b]
    if not bool(torch.any(x != 0)):
        raise A.AudioError(f"{item.path}: silent (every sample is zero); nothing to evaluate")
    return x.contiguous(), sr
