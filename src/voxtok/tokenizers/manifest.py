"""Input listing for corpus work: an audio folder or a manifest file -> a list of ``Record``.

A manifest is JSON Lines (``.jsonl``; ``.json`` holding JSON Lines or one JSON array), CSV (``.csv``) or TSV
(``.tsv``) with a ``path`` column and optional ``id``, ``start`` / ``end`` (seconds: a segment of the file),
``text`` and ``duration`` (seconds; saves probing the file when sorting by length). Relative paths are relative to
the manifest's folder. A folder is walked recursively for audio extensions; ids are the paths relative to it.

Problems with the listing itself (a line that is not JSON, a missing ``path``, a bad segment, a duplicate id) are
refused up front with the file and line, before any work starts; problems with the audio are found later, per
file, by whoever reads it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "opus", "mp3")
MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


@dataclass(frozen=True)
class Record:
    """One utterance to read: a whole file, or the segment ``[start, end)`` seconds of it.

    Attributes:
        id: unique key of the utterance (any string: never used as a file name).
        path: the audio file (absolute, or as given when no folder could anchor it).
        start: segment start in seconds, or None for the file's beginning.
        end: segment end in seconds, or None for the file's end.
        text: transcript, when the manifest gives one.
        duration: seconds, when known without opening the file (``end - start``, or a manifest's ``duration``).
    """

    id: str
    path: str
    start: float | None = None
    end: float | None = None
    text: str | None = None
    duration: float | None = None


def list_inputs(source: str | os.PathLike, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Record]:
    """Records from a folder (walked recursively for ``extensions``) or a manifest file (by its suffix).

    Raises:
        ValueError: ``source`` does not exist, is a file of an unknown kind, or the manifest is malformed.
    """
    p = Path(source)
    if p.is_dir():
        return list_folder(p, extensions)
    if p.is_file():
        return read_manifest(p)
    raise ValueError(f"input {str(source)!r} is neither a folder nor a manifest file")


def list_folder(root: str | os.PathLike, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Record]:
    """Every file under ``root`` whose extension is in ``extensions`` (case-insensitive), sorted by id.

    Hidden files and folders (names starting with ``.``) are skipped and folder symlinks are not followed, so a
    walk cannot loop. Ids are POSIX paths relative to ``root``, extension included (``a/b.wav`` and ``a/b.flac``
    stay distinct).
    """
    root = Path(root)
    exts = {e.lower().lstrip(".") for e in extensions}
    if not exts:
        raise ValueError("extensions must name at least one audio extension, e.g. ('wav', 'flac')")
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.rsplit(".", 1)[-1].lower() not in exts or "." not in name:
                continue
            full = Path(folder) / name
            out.append(Record(id=full.relative_to(root).as_posix(), path=os.path.abspath(full)))
    out.sort(key=lambda r: r.id)
    return out


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """Records of a JSON Lines / JSON / CSV / TSV manifest, in file order.

    Raises:
        ValueError: naming the file and line, for an unknown suffix, a line that does not parse, a missing or
            empty ``path``, a ``start`` / ``end`` / ``duration`` that is not a finite number, ``start < 0``,
            ``end <= start``, or an id used twice.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise ValueError(f"{path}: unknown manifest kind {suffix!r}; expected one of {', '.join(MANIFEST_SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    if suffix in (".csv", ".tsv"):
        rows = _table_rows(path, text, "\t" if suffix == ".tsv" else ",")
    else:
        rows = _json_rows(path, text)
    out: list[Record] = []
    seen: dict[str, int] = {}
    base = path.parent
    for line, row in rows:
        rec = _record(row, base, f"{path}:{line}")
        if rec.id in seen:
            raise ValueError(f"{path}:{line}: id {rec.id!r} is already used on line {seen[rec.id]}; ids must be unique")
        seen[rec.id] = line
        out.append(rec)
    return out


def _json_rows(path: Path, text: str) -> list[tuple[int, Any]]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        return [(i + 1, item) for i, item in enumerate(items)]
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON object ({e.msg})") from e
    return rows


def _table_rows(path: Path, text: str, delimiter: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None or "path" not in reader.fieldnames:
        raise ValueError(f"{path}:1: the header must name a 'path' column; got {reader.fieldnames}")
    rows = []
    for row in reader:
        if None in row:  # more fields than the header
            raise ValueError(f"{path}:{reader.line_num}: {len(row) - 1 + len(row[None])} fields; the header has "
                             f"{len(reader.fieldnames)}")
        # An empty cell means "not given" in a table.
        rows.append((reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}))
    return rows


def _record(row: Any, base: Path, where: str) -> Record:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected an object with a 'path'; got {type(row).__name__}")
    raw = row.get("path")
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{where}: 'path' must be a non-empty string; got {raw!r}")
    rid = row.get("id", raw)
    if isinstance(rid, int | float) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        raise ValueError(f"{where}: 'id' must be a non-empty string; got {rid!r}")
    start, end, duration = (_seconds(row.get(k), k, where) for k in ("start", "end", "duration"))
    if start is not None and start < 0:
        raise ValueError(f"{where}: start must be >= 0 seconds; got {start}")
    if end is not None and end <= (start or 0.0):
        raise ValueError(f"{where}: end must be > start ({start or 0.0} s); got {end}")
    if start is not None or end is not None:
        # A segment's own length is what is read; a manifest's duration of the whole file would be wrong here.
        duration = (end - (start or 0.0)) if end is not None else None
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{where}: 'text' must be a string; got {type(text).__name__}")
    full = raw if os.path.isabs(raw) else os.path.abspath(base / raw)
    return Record(id=rid, path=full, start=start, end=end, text=text, duration=duration)


def _seconds(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key!r} must be a number of seconds; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x):
        raise ValueError(f"{where}: {key!r} must be a finite number of seconds; got {value!r}")
    return x
