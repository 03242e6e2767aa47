"""Corpus token extraction: ``voxtok extract`` and ``voxtok.tokenizers.extract``.

A folder or manifest of audio goes in; Parquet shards of codes, ``manifest.json`` and ``errors.jsonl`` come out
(layout: ``voxtok.tokenizers.shards``). DataLoader workers read, mix and resample (``batching``); the codec runs
on length-bucketed, padded batches with their lengths; Lightning's ``Trainer.predict`` runs it on one process
or, with ``devices`` / ``num_nodes``, on many (DDP), each rank writing its own shards over a disjoint slice.
A run that dies at any moment is resumed by running it again. docs/extraction.md has the details.

(This module is ``extraction``, not ``extract``: a submodule named like the ``extract`` function would replace
that function on the package as soon as it is imported.)
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from voxtok.codecs.codec import Codec
from voxtok.codecs.loading import load
from voxtok.codecs.spec import codec_spec
from voxtok.tokenizers import shards as S
from voxtok.tokenizers.batching import (
    FixedBatches,
    UtteranceDataset,
    collate,
    describe,
    load_record,
    make_batches,
    probe_durations,
    seconds,
)
from voxtok.tokenizers.manifest import AUDIO_EXTENSIONS, Record, list_inputs

log = logging.getLogger("voxtok")

EXIT_OK = 0
EXIT_PARTIAL = 3  # some utterances failed (listed in errors.jsonl); the rest were extracted
EXIT_VERIFY = 4  # --verify found batched codes that differ from encoding alone beyond what the codec allows


# Share of an utterance's frames whose first codebook may differ from encoding it alone, anywhere in it. Float
# rounding depends on the padded length of a batch (oneDNN and attention kernels pick shape-dependent paths); the
# ~1e-7 differences flip the rare frame whose latent sits on a boundary between two codes, most often in the
# deeper codebooks of an RVQ, whose residuals are small. docs/extraction.md, "Exactness".
ROUNDING_FRAMES = 0.02


@dataclass
class VerifyReport:
    """What ``verify`` found: per checked id, how many frames differ from encoding it alone, and where.

    An utterance passes when its frame count is the same and, before its last ``tail`` frames (0 for causal
    codecs; ``ceil(context_seconds * frame_rate)`` otherwise, the receptive field the codec's own chunking
    assumes), at most ``ROUNDING_FRAMES`` of the frames differ in the first codebook. Any bug in reading or
    aligning audio changes most frames of the first codebook; rounding changes very few.
    """

    checked: list[dict[str, Any]]
    tail: int

    def passes(self, c: dict[str, Any]) -> bool:
        inside = max(c["num_frames"] - self.tail, 0)
        return c["same_length"] and c["first_codebook_differing"] <= ROUNDING_FRAMES * inside

    @property
    def ok(self) -> bool:
        return all(self.passes(c) for c in self.checked)

    def summary(self) -> str:
        same = sum(c["differing_frames"] == 0 and c["same_length"] for c in self.checked)
        frames = sum(c["num_frames"] for c in self.checked)
        differ = sum(c["differing_frames"] for c in self.checked)
        first = sum(c["first_codebook_differing"] for c in self.checked)
        failed = [c["id"] for c in self.checked if not self.passes(c)]
        verdict = f"MISMATCH in {len(failed)}: {', '.join(map(repr, failed[:5]))}" if failed else "ok"
        return (f"verify: {len(self.checked)} utterances re-encoded alone, {same} identical; of {frames} frames "
                f"{differ} differ in some codebook, {first} in the first before the last {self.tail} "
                f"(allowed: {ROUNDING_FRAMES:.0%}, float rounding) -> {verdict}")


@dataclass
class ExtractionResult:
    """The outcome of one ``extract`` call (on rank 0 the whole run's figures; on other ranks their own).

    Attributes:
        output: the extraction folder.
        total: utterances in the input.
        done_before: utterances already in complete shards when the run started (skipped).
        extracted: utterances encoded by this run.
        failed: utterances that failed in this run.
        errors: lines of ``errors.jsonl`` after the run (every failure not since extracted).
        audio_seconds: audio encoded by this run (at the codec's rate).
        wall_seconds: from the start of the call to the last shard written (not counting ``verify``).
        processes: ranks that took part.
        verify: the ``verify`` report when asked for.
    """

    output: Path
    total: int
    done_before: int
    extracted: int
    failed: int
    errors: int
    audio_seconds: float
    wall_seconds: float
    processes: int = 1
    verify: VerifyReport | None = None
    rank: int = 0

    @property
    def speed(self) -> float:
        """Audio-hours per hour (= audio seconds per second); the inverse of the real-time factor."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def rtf(self) -> float:
        """Real-time factor: wall seconds per second of audio (lower is faster)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else float("inf")

    @property
    def exit_status(self) -> int:
        """0 all extracted; ``EXIT_PARTIAL`` (3) when ``errors.jsonl`` lists failures; ``EXIT_VERIFY`` (4) when
        ``verify`` found a mismatch."""
        if self.verify is not None and not self.verify.ok:
            return EXIT_VERIFY
        return EXIT_PARTIAL if self.errors else EXIT_OK

    def summary(self) -> str:
        rate = f"{self.speed:.1f} audio-hours per hour, RTF {self.rtf:.3g}" if self.audio_seconds else "nothing new"
        fails = f"{self.errors} failed (see {self.output / S.ERRORS_NAME})" if self.errors else "0 failed"
        procs = f" on {self.processes} processes" if self.processes > 1 else ""
        return (f"voxtok extract: {self.done_before + self.extracted} of {self.total} utterances in "
                f"{self.output} ({self.extracted} now, {self.done_before} already done), {fails}; "
                f"{seconds(self.audio_seconds)} of audio in {seconds(self.wall_seconds)}{procs}: {rate}")


def load_codec(model: str | os.PathLike | Codec) -> Codec:
    """A codec in eval mode from a ``save_pretrained`` directory or a preset name.

    A preset has random weights; they are drawn under seed 0 here so that every rank of a run, and every rerun,
    builds the same codec (and the output folder's weights hash matches).
    """
    if isinstance(model, Codec):
        return model.eval()
    # `load` decides between a directory and a preset; the seed only matters for a preset's random weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load(str(model)).eval()


def extract(
    model: str | os.PathLike | Codec,
    input: str | os.PathLike | Sequence[Record],
    output: str | os.PathLike,
    *,
    batch_seconds: float = 60.0,
    num_workers: int = 2,
    accelerator: str = "cpu",
    devices: int = 1,
    num_nodes: int = 1,
    n_q: int | None = None,
    shard_size: int = 1000,
    shard_seconds: float = 300.0,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    verify: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> ExtractionResult:
    """Encode every utterance of a corpus into Parquet shards under ``output``; resumable, multi-process.

    Args:
        model: a ``save_pretrained`` directory, a preset name (random weights, seed 0) or a ``Codec``.
        input: an audio folder (recursive, by ``extensions``), a manifest (JSONL / CSV / TSV, see
            ``voxtok.tokenizers.manifest``) or a list of ``Record``.
        output: extraction folder; a rerun into it skips what complete shards hold and refuses another codec.
        batch_seconds: padded audio per batch (items sorted by length); longer items go alone.
        num_workers: DataLoader worker processes per rank (reading, mixing, resampling); 0 reads in-process.
        accelerator, devices, num_nodes: Lightning's; ``devices * num_nodes > 1`` runs DDP (gloo on the CPU).
        n_q: keep the first ``n_q`` codebooks (default all).
        shard_size, shard_seconds: a shard is closed at ``shard_size`` utterances or when it has been open
            ``shard_seconds``, whichever comes first: a killed run loses at most that much work per rank.
        extensions: audio extensions for folder input.
        verify: re-encode this many random utterances alone afterwards and compare with the stored codes.
        seed: picks the ``verify`` utterances.
        progress: show a progress bar (a terminal) or a line every 30 s (a log file).

    Returns:
        ``ExtractionResult`` (``exit_status`` 0 / 3 partial / 4 verify mismatch, ``summary()``).

    Raises:
        ValueError: bad arguments, a malformed manifest, or an output folder made with another codec or settings.
    """
    t0 = time.perf_counter()
    for name, v in (("batch_seconds", batch_seconds), ("shard_seconds", shard_seconds)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0; got {v}")
    for name, v, low in (("num_workers", num_workers, 0), ("shard_size", shard_size, 1), ("verify", verify, 0),
                         ("devices", devices, 1), ("num_nodes", num_nodes, 1)):
        if int(v) < low:
            raise ValueError(f"{name} must be >= {low}; got {v}")
    codec = load_codec(model)
    if isinstance(input, str | os.PathLike):
        records, source = list_inputs(input, extensions), os.path.abspath(input)
    else:
        records, source = list(input), "records"
        _check_unique(records)
    if not records:
        what = f"audio files ({', '.join(extensions)})" if source != "records" and Path(source).is_dir() else "records"
        raise ValueError(f"input {source!r} holds no {what}")
    spec = codec_spec(codec, n_q)
    out = Path(output)
    manifest = S.output_manifest(spec, {"input": source, "batch_seconds": float(batch_seconds)})
    if devices * num_nodes == 1:
        # Refuse another codec before Lightning starts. With several ranks every rank checks once the process
        # group is up (``_Run.plan``), so that all of them stop together instead of some waiting for the others.
        S.prepare_output(out, manifest)
    run = _Run(out, codec, records, spec, manifest, n_q, float(batch_seconds), int(num_workers), int(shard_size),
               float(shard_seconds), progress, pin_memory=accelerator != "cpu" and torch.cuda.is_available())
    with _quiet_lightning():
        trainer = _trainer(accelerator, int(devices), int(num_nodes))
        trainer.predict(_encode_module(run), datamodule=_data_module(run), return_predictions=False)
    rank, world = trainer.global_rank, trainer.world_size
    run.finish()
    stats = np.array(_all_gather(run.stats(), world), dtype=np.float64)  # every rank is done past this line
    wall = time.perf_counter() - t0
    if rank != 0:
        own = run.stats()
        return ExtractionResult(out, len(records), int(own[2]), int(own[0]), int(own[1]), int(own[1]),
                                float(own[3]), wall, world, rank=rank)
    errors = S.merge_errors(out, S.scan_done(out))
    result = ExtractionResult(out, len(records), int(stats[:, 2].sum()), int(stats[:, 0].sum()),
                              int(stats[:, 1].sum()), len(errors), float(stats[:, 3].sum()), wall, world)
    if verify:
        result.verify = verify_output(out, codec, int(verify), seed=seed)
    return result


def _check_unique(records: Sequence[Record]) -> None:
    seen: set[str] = set()
    for r in records:
        if not isinstance(r, Record):
            raise ValueError(f"input records must be voxtok.tokenizers.manifest.Record; got {type(r).__name__}")
        if r.id in seen:
            raise ValueError(f"id {r.id!r} appears twice in the input; ids must be unique")
        seen.add(r.id)


# ----------------------------------------------------------------------------------------------------------
# one rank's run


class _Run:
    """Everything a rank needs: the plan (its slice, what is done), the shard and error writers, the counters."""

    def __init__(self, out: Path, codec: Codec, records: list[Record], spec: dict[str, Any],
                 manifest: dict[str, Any], n_q: int | None, batch_seconds: float, num_workers: int, shard_size: int,
                 shard_seconds: float, progress: bool, pin_memory: bool) -> None:
        self.out, self.codec, self.records, self.spec, self.n_q = out, codec, records, spec, n_q
        self.manifest = manifest
        self.batch_seconds, self.num_workers = batch_seconds, num_workers
        self.shard_size, self.shard_seconds, self.show_progress = shard_size, shard_seconds, progress
        self.pin_memory = pin_memory
        self.rank, self.world = 0, 1
        self.recs = sorted(records, key=lambda r: r.id)
        self.done: set[str] = set()
        self.extracted = self.failed = self.done_before = 0
        self.audio_seconds = 0.0
        self.buffer: list[dict[str, Any]] = []
        self.opened = time.monotonic()
        self.writer: S.ShardWriter | None = None
        self.errors: S.ErrorLog | None = None
        self.progress: _Progress | None = None

    def plan(self, rank: int, world: int) -> list[list[int]]:
        """This rank's batches (indices into ``self.recs``) that still hold work.

        Batches are planned over the *whole* input, then dealt to ranks in turn: a batch always holds the same
        utterances, whatever the number of processes and however often the run was interrupted. Codes can
        depend on the padded length of the batch by float rounding (docs/extraction.md), so this is what makes
        a resumed or multi-process run give the same codes as one uninterrupted process.
        """
        self.rank, self.world = rank, world
        S.prepare_output(self.out, self.manifest)
        own = list(range(rank, len(self.recs), world))
        durations = [0.0] * len(self.recs)
        # Each rank reads the headers of every world-th file; the durations are then shared with all ranks.
        for r, part in enumerate(_all_gather(probe_durations([self.recs[i] for i in own]), world)):
            durations[r::world] = part
        batches = make_batches(durations, self.batch_seconds)[rank::world]
        self.done = S.scan_done(self.out, self.spec)
        todo = [b for b in batches if any(self.recs[i].id not in self.done for i in b)]
        mine = sum(len(b) for b in batches)
        left = sum(self.recs[i].id not in self.done for b in todo for i in b)
        self.done_before = mine - left
        self.writer = S.ShardWriter(self.out, rank, self.spec)
        self.errors = S.ErrorLog(self.out, rank)
        self.progress = _Progress(left, rank, world, self.show_progress)
        self.opened = time.monotonic()
        return todo

    def add(self, rows: list[dict[str, Any]], errors: list[tuple[Record, str]]) -> None:
        """Take one batch's results; close a shard after the batch when it is full or has been open too long.

        Shards hold whole batches, so a batch is either in a complete shard or to be redone, never split."""
        assert self.errors is not None and self.progress is not None
        # A batch can mix done and new utterances only when the input changed since the last run.
        rows = [r for r in rows if r["id"] not in self.done]
        errors = [(rec, why) for rec, why in errors if rec.id not in self.done]
        for rec, reason in errors:
            self.errors.append({"id": rec.id, "path": rec.path, "reason": reason}
                               | ({"start": rec.start, "end": rec.end} if rec.start or rec.end else {}))
        audio = sum(r["num_samples"] for r in rows) / self.codec.sample_rate
        self.failed += len(errors)
        self.audio_seconds += audio
        self.buffer.extend(rows)
        self.progress.update(len(rows) + len(errors), audio, self.failed)
        if len(self.buffer) >= self.shard_size or time.monotonic() - self.opened >= self.shard_seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer and self.writer is not None:
            self.writer.write(self.buffer)
            self.extracted += len(self.buffer)
            self.buffer = []
        self.opened = time.monotonic()

    def finish(self) -> None:
        self.flush()
        if self.errors is not None:
            self.errors.close()
        if self.progress is not None:
            self.progress.close()

    def stats(self) -> list[float]:
        return [self.extracted, self.failed, self.done_before, self.audio_seconds]


def encode_batch(codec: Codec, batch: dict[str, Any], records: Sequence[Record], n_q: int | None
                 ) -> tuple[list[dict[str, Any]], list[tuple[Record, str]]]:
    """Encode a collated batch (``batching.collate``; its indices point into ``records``) -> (rows for the
    shard, (record, reason) failures).

    When the batch fails as a whole (one item the codec rejects, memory), its items are retried one by one, so a
    failure costs only the item that caused it.
    """
    errors = [(records[i], reason) for i, reason in batch["errors"]]
    recs = [records[i] for i in batch["indices"]]
    if not recs:
        return [], errors
    audio, lengths = batch["audio"], batch["lengths"]
    try:
        return _rows(recs, codec.encode(audio, lengths, sample_rate=codec.sample_rate, n_q=n_q)), errors
    except Exception as e:
        if len(recs) == 1:
            return [], errors + [(recs[0], describe(e))]
    if audio.is_cuda:
        torch.cuda.empty_cache()
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(recs):
        try:
            tokens = codec.encode(audio[i: i + 1, :, : int(lengths[i])], sample_rate=codec.sample_rate, n_q=n_q)
        except Exception as e:
            errors.append((rec, describe(e)))
            continue
        rows += _rows([rec], tokens)
    return rows, errors


def _rows(recs: list[Record], tokens: Any) -> list[dict[str, Any]]:
    codes = tokens.codes.to("cpu", torch.int32).numpy()
    rows = []
    for i, rec in enumerate(recs):
        t = int(tokens.lengths[i])
        rows.append({"id": rec.id, "path": rec.path, "start": rec.start, "end": rec.end,
                     "num_samples": int(tokens.audio_lengths[i]), "num_frames": t,
                     "codes": np.ascontiguousarray(codes[i, :, :t]), "text": rec.text})
    return rows


# ----------------------------------------------------------------------------------------------------------
# Lightning pieces (imported lazily: `import voxtok` never imports Lightning)


def _lightning() -> Any:
    import lightning.pytorch as L

    return L


def _trainer(accelerator: str, devices: int, num_nodes: int) -> Any:
    from datetime import timedelta

    L = _lightning()
    strategy: Any = "auto"
    if devices * num_nodes > 1:
        from lightning.pytorch.strategies import DDPStrategy

        # Ranks that finish their batches early wait for the slowest at the end; the default 30 min timeout
        # would cut off a long run whose ranks finish unevenly.
        strategy = DDPStrategy(timeout=timedelta(hours=24))
    return L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, use_distributed_sampler=False, inference_mode=True)


def _all_gather(obj: Any, world: int) -> list[Any]:
    """``obj`` of every rank, in rank order (a barrier too); ``[obj]`` without a process group."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    _lightning()  # its import sets its loggers to INFO; set ours after it
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*Total length of .* across ranks is zero.*")
        warnings.filterwarnings("ignore", message=r".*custom batch sampler.*")
        warnings.filterwarnings("ignore", message=r".*persistent_workers=True.*")
        warnings.filterwarnings("ignore", message=r".*treespec.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _encode_module(run: _Run) -> Any:
    """The LightningModule (defined on first use, so that importing this module does not import Lightning)."""
    L = _lightning()

    class EncodeModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.codec = run.codec

        def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> Any:
            return encode_batch(self.codec, batch, run.recs, run.n_q)

        def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            run.add(*outputs)

    return EncodeModule()


def _data_module(run: _Run) -> Any:
    L = _lightning()

    class DataModule(L.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.run = run

        def predict_dataloader(self) -> torch.utils.data.DataLoader:
            batches = run.plan(self.trainer.global_rank, self.trainer.world_size)
            return torch.utils.data.DataLoader(
                UtteranceDataset(run.recs, run.codec.sample_rate), batch_sampler=FixedBatches(batches),
                collate_fn=collate, num_workers=run.num_workers, pin_memory=run.pin_memory)

    return DataModule()


# ----------------------------------------------------------------------------------------------------------
# progress


class _Progress:
    """tqdm on a terminal; on a log file (SLURM, nohup) a plain line every 30 s."""

    def __init__(self, total: int, rank: int, world: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.name = f"extract[rank {rank}]" if world > 1 else "extract"
        self.t0 = self.last = time.perf_counter()
        self.n = 0
        self.audio = 0.0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="utt", desc=self.name, position=rank, dynamic_ncols=True,
                            mininterval=0.5, leave=world == 1)

    def update(self, n: int, audio: float, failed: int) -> None:
        self.n += n
        self.audio += audio
        now = time.perf_counter()
        dt = max(now - self.t0, 1e-9)
        rates = f"{self.n / dt:.1f} utt/s, {self.audio / dt:.1f} audio-s/s, {failed} failed"
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(rates, refresh=False)
        elif self.enabled and now - self.last >= 30:
            self.last = now
            print(f"voxtok {self.name}: {self.n}/{self.total} utterances, {rates}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------------------
# verify


def verify_output(out: str | os.PathLike, codec: Codec, k: int, seed: int = 0) -> VerifyReport:
    """Re-encode ``k`` random utterances of ``out`` alone and compare with their stored (batched) codes."""
    out = Path(out)
    n_q = int(S.read_manifest_json(out)["n_q"])
    where: list[tuple[Path, int, str]] = []
    for f in S.shard_files(out):
        ids = pq.read_table(f, columns=["id"]).column("id").to_pylist()
        where += [(f, i, rid) for i, rid in enumerate(ids)]
    picks = random.Random(seed).sample(where, min(k, len(where)))
    tail = 0 if codec.causal else int(np.ceil(codec.context_seconds * codec.frame_rate))
    checked = []
    by_file: dict[Path, list[int]] = {}
    for f, i, _ in picks:
        by_file.setdefault(f, []).append(i)
    for f, rows in by_file.items():
        table = pq.read_table(f).take(rows)
        stored = S.codes_of(table, str(f))
        for row, codes in zip(table.drop_columns(["codes"]).to_pylist(), stored, strict=True):
            rec = Record(row["id"], row["path"], row["start"], row["end"])
            alone = codec.encode(load_record(rec, codec.sample_rate)[None, None], sample_rate=codec.sample_rate,
                                 n_q=n_q)
            fresh = alone.codes[0, :, : int(alone.lengths[0])].to(torch.int32).numpy()
            t = codes.shape[1]
            same = fresh.shape == codes.shape
            diff = (fresh != codes).any(0).nonzero()[0] if same else np.arange(t)
            first = (fresh[0] != codes[0]).nonzero()[0] if same else np.arange(t)
            checked.append({"id": rec.id, "num_frames": t, "same_length": same, "differing_frames": len(diff),
                            "first_codebook_differing": int((first < t - tail).sum()),
                            "first_diff_from_end": int(t - diff.min()) if len(diff) else 0})
    return VerifyReport(checked, tail)
