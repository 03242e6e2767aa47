"""The on-disk form of extracted corpus tokens: Parquet shards, ``manifest.json`` and ``errors.jsonl``.

::

    OUT/manifest.json                       codec spec (codecs.spec) + extraction settings
    OUT/shards/part-r0000-000001.parquet    complete shards (written under a hidden temporary name, then renamed)
    OUT/errors.jsonl                        one line per failed utterance: {"id", "path", "reason"}
    OUT/errors-pending/*.jsonl              failures of a run still going (or killed), folded in at the end
    OUT/corrupt/                            shards found unreadable on a rerun (their utterances were redone)

A shard's columns: ``id`` (string), ``path`` (string), ``start`` / ``end`` (float64 seconds, null for whole
files), ``num_samples`` (int64, samples at the codec's rate), ``num_frames`` (int64), ``codes``
(``list<list<int32>>``: one list per codebook, so ``codes[q][t]``, shape ``[n_q, num_frames]``) and ``text``
(string, null when the input has none). Every shard also carries the codec spec in its Parquet metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from voxtok.codecs.spec import check_spec

log = logging.getLogger("voxtok")

MANIFEST_NAME = "manifest.json"
ERRORS_NAME = "errors.jsonl"
PENDING_DIR = "errors-pending"
SHARDS_DIR = "shards"
CORRUPT_DIR = "corrupt"
FORMAT = "voxtok-tokens"
FORMAT_VERSION = 1
CODES_LAYOUT = "codes[q][t]: one int32 list per codebook, shape [n_q, num_frames]"
META_KEY = b"voxtok"

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("num_samples", pa.int64()),
    pa.field("num_frames", pa.int64()),
    pa.field("codes", pa.list_(pa.list_(pa.int32()))),
    pa.field("text", pa.string()),
])

_SHARD = re.compile(r"^part-r(\d+)-(\d+)\.parquet$")


# ----------------------------------------------------------------------------------------------------------
# manifest.json


def output_manifest(spec: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest.json``'s content: the codec spec's fields, then the extraction's own beside them."""
    return {**spec, "format": FORMAT, "format_version": FORMAT_VERSION, "codes_layout": CODES_LAYOUT,
            "columns": SCHEMA.names, **settings}


def read_manifest_json(out: str | os.PathLike) -> dict[str, Any]:
    """The ``manifest.json`` of an extraction folder (``ValueError`` when missing or not JSON)."""
    f = Path(out) / MANIFEST_NAME
    if not f.is_file():
        raise ValueError(f"{out}: no {MANIFEST_NAME}; not a voxtok extraction folder")
    try:
        m = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from e
    if m.get("format") != FORMAT:
        raise ValueError(f"{f}: format {m.get('format')!r} is not {FORMAT!r}")
    if int(m.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{f}: format_version {m['format_version']} is newer than this voxtok reads "
                         f"({FORMAT_VERSION}); upgrade voxtok")
    return m


def prepare_output(out: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Create the output folder, or check that an existing one was made with the same codec and settings.

    Raises:
        ValueError: ``manifest.json`` names another codec, weights or settings (every differing field named), or
            the folder holds shards but no manifest.
    """
    out = Path(out)
    (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    f = out / MANIFEST_NAME
    if f.exists():
        check_spec(manifest, read_manifest_json(out), str(f))
        return
    if shard_files(out):
        raise ValueError(f"{out}: holds shards but no {MANIFEST_NAME}; use a new output folder")
    # Every rank of a multi-process run may get here first; they write the same content, so any rename wins.
    atomic_write(f, (json.dumps(dict(manifest), indent=2) + "\n").encode())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file in the same folder and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------------
# shards


def shard_files(out: str | os.PathLike) -> list[Path]:
    """Complete shards of an extraction folder, in name order (temporary files are never listed)."""
    d = Path(out) / SHARDS_DIR
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _SHARD.match(p.name))


def scan_done(out: str | os.PathLike, spec: Mapping[str, Any] | None = None) -> set[str]:
    """Ids held by the complete shards of ``out``.

    A shard whose Parquet footer cannot be read is moved to ``corrupt/`` (its utterances are then redone);
    a shard made with another codec (its metadata disagrees with ``spec``) is refused with ``ValueError``.
    """
    done: set[str] = set()
    for f in shard_files(out):
        try:
            pf = pq.ParquetFile(f)
            meta = (pf.schema_arrow.metadata or {}).get(META_KEY)
            ids = pf.read(columns=["id"]).column("id").to_pylist()
        except (OSError, pa.ArrowException) as e:
            log.warning("voxtok: %s is unreadable (%s); moved to %s/, its utterances will be redone", f, e,
                        CORRUPT_DIR)
            # Out of shards/, so that pyarrow and datasets, which read the whole folder, never meet it.
            aside = Path(out) / CORRUPT_DIR
            aside.mkdir(exist_ok=True)
            try:
                os.replace(f, aside / f.name)
            except FileNotFoundError:  # another rank moved it first
                pass
            continue
        if spec is not None and meta is not None:
            check_spec(spec, json.loads(meta), str(f))
        done.update(ids)
    return done


class ShardWriter:
    """Writes one rank's shards: ``part-r{rank}-{seq}.parquet``, each through a temporary name and a rename.

    Sequence numbers continue after the rank's last complete shard, so a rerun never overwrites one. The rank's
    own leftover temporary files (a process killed mid-write) are removed when the writer starts.
    """

    def __init__(self, out: str | os.PathLike, rank: int, spec: Mapping[str, Any]) -> None:
        self.dir = Path(out) / SHARDS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rank = int(rank)
        self.meta = {META_KEY: json.dumps(dict(spec)).encode()}
        prefix = f"part-r{self.rank:04d}-"
        seqs = [int(m.group(2)) for p in self.dir.iterdir() if (m := _SHARD.match(p.name))
                and int(m.group(1)) == self.rank]
        self.seq = max(seqs, default=0)
        for p in self.dir.glob(f".{prefix}*.tmp"):
            p.unlink(missing_ok=True)

    def write(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write ``rows`` (dicts with the schema's columns; ``codes`` an int array ``[Q, T]``) as one shard."""
        self.seq += 1
        final = self.dir / f"part-r{self.rank:04d}-{self.seq:06d}.parquet"
        tmp = self.dir / f".{final.name}.tmp"
        table = rows_to_table(rows).replace_schema_metadata(self.meta)
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        return final


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows -> an Arrow table with ``SCHEMA``; ``codes`` are built from one flat int32 buffer plus offsets."""
    codes = [np.asarray(r["codes"]) for r in rows]
    for r, c in zip(rows, codes, strict=True):
        if c.ndim != 2 or c.shape[1] != int(r["num_frames"]):
            raise ValueError(f"{r['id']!r}: codes must be [Q, num_frames={r['num_frames']}]; got {c.shape}")
    q_counts = np.array([c.shape[0] for c in codes], dtype=np.int64)
    inner_lengths = np.concatenate([np.full(c.shape[0], c.shape[1], dtype=np.int64) for c in codes]) \
        if codes else np.zeros(0, dtype=np.int64)
    values = pa.array(np.concatenate([c.reshape(-1) for c in codes]).astype(np.int32) if codes
                      else np.zeros(0, np.int32), type=pa.int32())
    inner = pa.ListArray.from_arrays(pa.array(_offsets(inner_lengths), pa.int32()), values)
    outer = pa.ListArray.from_arrays(pa.array(_offsets(q_counts), pa.int32()), inner)
    cols = {name: pa.array([r.get(name) for r in rows], SCHEMA.field(name).type)
            for name in SCHEMA.names if name != "codes"}
    cols["codes"] = outer
    return pa.table([cols[n] for n in SCHEMA.names], schema=SCHEMA)


def _digest(codes: np.ndarray) -> bytes:
    return hashlib.blake2b(f"{codes.shape}".encode() + np.ascontiguousarray(codes, np.int32).tobytes(),
                           digest_size=16).digest()


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def codes_of(table: pa.Table | pa.RecordBatch, where: str = "shard") -> list[np.ndarray]:
    """The ``codes`` column as int32 arrays ``[Q, T]``, checked against ``num_frames``."""
    col = table.column("codes")
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    frames = table.column("num_frames").to_numpy()
    ids = table.column("id")
    out: list[np.ndarray] = []
    for chunk in chunks:
        inner = chunk.flatten()
        q = chunk.value_lengths().to_numpy(zero_copy_only=False)
        t = inner.value_lengths().to_numpy(zero_copy_only=False)
        values = inner.flatten().to_numpy(zero_copy_only=False)
        pos, row_in = 0, 0
        for qi in q:
            i = len(out)
            ti = int(frames[i])
            lens = t[row_in: row_in + qi]
            if (lens != ti).any():
                raise ValueError(f"{where}: id {ids[i].as_py()!r} has codebooks of {sorted(set(lens.tolist()))} "
                                 f"frames; num_frames is {ti}")
            out.append(values[pos: pos + qi * ti].reshape(int(qi), ti))
            pos += int(qi) * ti
            row_in += int(qi)
    return out


def read_tokens(out: str | os.PathLike) -> Iterator[tuple[str, Tensor]]:
    """Yield ``(id, codes [Q, T] int64)`` for every utterance of an extraction folder, shard by shard.

    Reads one Parquet row group at a time, so memory stays bounded by the shard size. ``codes`` are int64
    tensors (the ``Tokens`` convention), ready for ``codec.decode(codes[None])``.

    Raises:
        ValueError: ``out`` is not an extraction folder, or a shard's codes disagree with its ``num_frames``.
    """
    m = read_manifest_json(out)
    n_q = int(m["n_q"])
    for f in shard_files(out):
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(columns=["id", "num_frames", "codes"]):
            for rid, codes in zip(batch.column("id").to_pylist(), codes_of(batch, str(f)), strict=True):
                if codes.shape[0] != n_q:
                    raise ValueError(f"{f}: id {rid!r} has {codes.shape[0]} codebooks; manifest says n_q={n_q}")
                yield rid, torch.from_numpy(codes.astype(np.int64))


# ----------------------------------------------------------------------------------------------------------
# errors


class ErrorLog:
    """Appends one rank's failures to its own file under ``errors-pending/`` (flushed per line, so a killed run
    keeps them); ``merge_errors`` folds them into ``errors.jsonl`` once every rank is done."""

    def __init__(self, out: str | os.PathLike, rank: int) -> None:
        self.path = Path(out) / PENDING_DIR / f"r{int(rank):04d}-{uuid.uuid4().hex[:12]}.jsonl"
        self._fh = None

    def append(self, record: Mapping[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # kept open for the whole run
        self._fh.write(json.dumps(dict(record)) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_errors(out: str | os.PathLike, pending: bool = True) -> dict[str, dict[str, Any]]:
    """Failures by id: ``errors.jsonl``, then (``pending``) the pending files, later lines replacing earlier ones.

    A line cut short by a killed process is skipped."""
    out = Path(out)
    files = [out / ERRORS_NAME]
    if pending and (out / PENDING_DIR).is_dir():
        files += sorted((out / PENDING_DIR).glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
    found: dict[str, dict[str, Any]] = {}
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                found[rec["id"]] = rec
    return found


def merge_errors(out: str | os.PathLike, done: Iterable[str]) -> list[dict[str, Any]]:
    """Fold pending failures into ``errors.jsonl`` (one line per id, ids in ``done`` dropped); return its lines.

    Call it only when no rank is running: pending files are deleted after the atomic rewrite."""
    out = Path(out)
    done = set(done)
    merged = [rec for rid, rec in sorted(read_errors(out).items()) if rid not in done]
    pending = sorted((out / PENDING_DIR).glob("*.jsonl")) if (out / PENDING_DIR).is_dir() else []
    if merged or (out / ERRORS_NAME).exists():
        atomic_write(out / ERRORS_NAME, "".join(json.dumps(r) + "\n" for r in merged).encode())
    for p in pending:
        p.unlink(missing_ok=True)
    return merged


# ----------------------------------------------------------------------------------------------------------
# merging


def merge_shards(sources: Sequence[str | os.PathLike], output: str | os.PathLike,
                 shard_size: int = 10000) -> int:
    """Merge the shards of several extraction folders (runs or ranks) into one new folder; return its row count.

    All sources must come from the same codec and settings (``manifest.json`` checked field by field). An id in
    several sources is kept once when its codes agree and refused when they differ. ``errors.jsonl`` of the
    output is the union of the sources' failures, less the ids that have codes somewhere. Rows are rewritten
    into shards of ``shard_size`` rows, in source order.

    Raises:
        ValueError: no sources, mismatched manifests, conflicting codes for one id, or an output folder that
            already holds shards.
    """
    if not sources:
        raise ValueError("merge_shards needs at least one source folder")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1; got {shard_size}")
    manifests = [read_manifest_json(s) for s in sources]
    for s, m in zip(sources[1:], manifests[1:], strict=True):
        check_spec(manifests[0], m, str(Path(s) / MANIFEST_NAME))
    output = Path(output)
    if shard_files(output):
        raise ValueError(f"{output}: already holds shards; merge into a new folder")
    manifest = {**manifests[0], "merged_from": [os.path.abspath(s) for s in sources]}
    prepare_output(output, manifest)
    spec = {k: v for k, v in manifest.items() if k != "merged_from"}
    writer = ShardWriter(output, 0, spec)
    seen: dict[str, tuple[bytes, str]] = {}  # id -> (digest of its codes, first shard), not the codes themselves
    rows: list[dict[str, Any]] = []
    total = 0
    for src in sources:
        for f in shard_files(src):
            table = pq.read_table(f)
            codes = codes_of(table, str(f))
            for i, row in enumerate(table.drop_columns(["codes"]).to_pylist()):
                rid = row["id"]
                digest = _digest(codes[i])
                if rid in seen:
                    first, where = seen[rid]
                    if first != digest:
                        raise ValueError(f"id {rid!r} has different codes in {where} and {f}; refusing to merge")
                    continue
                seen[rid] = (digest, str(f))
                rows.append({**row, "codes": codes[i]})
                if len(rows) >= shard_size:
                    writer.write(rows)
                    total += len(rows)
                    rows = []
    if rows:
        writer.write(rows)
        total += len(rows)
    errors: dict[str, dict[str, Any]] = {}
    for src in sources:
        errors.update(read_errors(src))
    kept = [r for rid, r in sorted(errors.items()) if rid not in seen]
    if kept:
        atomic_write(output / ERRORS_NAME, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return total
