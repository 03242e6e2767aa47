"""Throughput of ``voxtok extract`` against a per-file loop with the same codec on the same corpus, and what a
``kill -9`` and a rerun cost.

The corpus is generated with espeak-ng (``voxtok.training.synth``: 16 kHz flac in LibriSpeech's layout, so every
file is resampled to the codec's rate, as a real corpus would be). The loop is what extraction scripts usually
do: ``audio.read``, then ``codec.encode`` one file at a time. Both run in this process, alternating, ``--repeats``
times; the table gives medians (the machine may be shared). The codec is loaded once, outside every timing.

    python benchmarks/extraction.py [--preset mimi-12.5hz] [--speakers 6] [--utterances 10] [--repeats 3]
                                    [--workers 0 2] [--batch-seconds 60] [--no-kill] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from voxtok import audio as A
from voxtok.tokenizers import extract
from voxtok.tokenizers import shards as S
from voxtok.tokenizers.extraction import load_codec
from voxtok.training.synth import synthesize_corpus


def per_file_loop(codec, files: list[Path]) -> tuple[float, float]:
    """(audio seconds, wall seconds) of reading and encoding each file alone."""
    t0 = time.perf_counter()
    audio = 0.0
    for f in files:
        x, sr = A.read(f)
        tokens = codec.encode(x[None], sample_rate=sr)
        tokens.codes[0, :, : int(tokens.lengths[0])].to(torch.int32).numpy()
        audio += int(tokens.audio_lengths[0]) / codec.sample_rate
    return audio, time.perf_counter() - t0


def cli_extract(model: str, corpus: Path, out: Path, devices: int, workers: int, batch_seconds: float) -> float:
    """Wall seconds of ``voxtok extract`` in a fresh process (every rank at one torch thread), start-up included."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "voxtok.cli", "extract", model, "--input", str(corpus), "--output", str(out),
           "--devices", str(devices), "--num-workers", str(workers), "--batch-seconds", str(batch_seconds),
           "--no-progress"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - t0


def _instrumented_child(model: str, corpus: str, out: str, events: str, batch_seconds: float, shard_size: int,
                        workers: int, threads: int | None) -> None:
    """``extract`` in a child process that logs, per line of ``events``, when it planned and each batch it encoded."""
    from voxtok.tokenizers import extraction as E

    if threads:
        torch.set_num_threads(threads)
    t_start = time.time()
    # Reader processes orphaned by the kill print tracebacks as they die: keep them out of the table.
    err = os.open(events + ".stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(err, 2)
    log = open(events, "a", buffering=1)  # lives as long as the process
    log.write(json.dumps({"t": t_start, "event": "start"}) + "\n")
    plan, add = E._Run.plan, E._Run.add

    def planned(self, rank, world):
        todo = plan(self, rank, world)
        log.write(json.dumps({"t": time.time(), "event": "planned", "batches": len(todo)}) + "\n")
        return todo

    def added(self, rows, errors):
        add(self, rows, errors)
        log.write(json.dumps({"t": time.time(), "event": "batch", "rows": len(rows)}) + "\n")

    E._Run.plan, E._Run.add = planned, added
    E.extract(model, corpus, out, batch_seconds=batch_seconds, shard_size=shard_size, num_workers=workers,
              progress=False)
    log.write(json.dumps({"t": time.time(), "event": "end"}) + "\n")


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def _child(model: str, corpus: Path, out: Path, events: Path, batch_seconds: float, shard_size: int,
           workers: int, threads: int | None) -> mp.Process:
    p = mp.get_context("spawn").Process(target=_instrumented_child, args=(
        model, str(corpus), str(out), str(events), batch_seconds, shard_size, workers, threads))
    p.start()
    return p


def kill_and_rerun(model: str, corpus: Path, work: Path, total: int, batch_seconds: float, shard_size: int,
                   workers: int, kill_at: float, threads: int | None = None) -> dict:
    """An uninterrupted run; then a run killed with SIGKILL once ``kill_at`` of the utterances are encoded, and
    its rerun. Each run is a fresh process (imports, codec construction and planning included)."""
    settings = (batch_seconds, shard_size, workers, threads)
    p = _child(model, corpus, work / "whole", work / "events0.jsonl", *settings)
    p.join()
    ev = _events(work / "events0.jsonl")
    whole = ev[-1]["t"] - ev[0]["t"]
    out, ev1, ev2 = work / "killed", work / "events1.jsonl", work / "events2.jsonl"
    p = _child(model, corpus, out, ev1, *settings)
    while p.is_alive():
        encoded = sum(e.get("rows", 0) for e in _events(ev1))
        if encoded >= kill_at * total:
            os.kill(p.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    p.join()
    killed_run = time.time() - _events(ev1)[0]["t"]
    encoded = sum(e.get("rows", 0) for e in _events(ev1))
    committed = len(S.scan_done(out))
    p = _child(model, corpus, out, ev2, *settings)
    p.join()
    ev = _events(ev2)
    start = next(e["t"] for e in ev if e["event"] == "start")
    planned = next(e["t"] for e in ev if e["event"] == "planned")
    first = next((e["t"] for e in ev if e["event"] == "batch"), float("nan"))
    end = next(e["t"] for e in ev if e["event"] == "end")
    return {"encoded_before_kill": encoded, "committed_before_kill": committed, "redone": encoded - committed,
            "rerun_encoded": sum(e.get("rows", 0) for e in ev), "resume_seconds": planned - start,
            "first_batch_seconds": first - start, "rerun_seconds": end - start, "whole_seconds": whole,
            "killed_seconds": killed_run, "final_ids": len(S.scan_done(out)), "exactly_once": _exactly_once(out),
            "same_codes": dict(_codes(out)) == dict(_codes(work / "whole"))}


def _codes(out: Path):
    return ((rid, codes.numpy().tobytes()) for rid, codes in S.read_tokens(out))


def _exactly_once(out: Path) -> bool:
    ids = [rid for rid, _ in S.read_tokens(out)]
    return len(ids) == len(set(ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mimi-12.5hz")
    ap.add_argument("--speakers", type=int, default=6)
    ap.add_argument("--utterances", type=int, default=10, help="per speaker")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="extract runs with these num_workers")
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--kill-shard-size", type=int, default=8, help="shard size for the kill / rerun run")
    ap.add_argument("--kill-batch-seconds", type=float, default=10.0,
                    help="batch seconds for the kill / rerun run (small enough for several batches)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--cli-devices", type=int, nargs="*", default=[],
                    help="also time the voxtok extract command in fresh processes with these --devices (one torch "
                         "thread per rank), and its no-op rerun (start-up alone)")
    ap.add_argument("--no-kill", action="store_true", help="skip the kill / rerun measurement")
    ap.add_argument("--quick", action="store_true", help="2 speakers x 4 utterances, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.speakers, args.utterances, args.repeats = 2, 4, 1
    logging.getLogger("voxtok").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        utts = synthesize_corpus(work / "corpus", speakers_per_subset=args.speakers,
                                 utterances_per_speaker=args.utterances, sample_rate=16000)
        files = sorted(u.path for u in utts)
        codec = load_codec(args.preset)
        print(f"corpus: {len(files)} utterances (16 kHz flac), generated in {time.perf_counter() - t:.1f} s; "
              f"codec {args.preset} ({sum(p.numel() for p in codec.parameters()) / 1e6:.1f}M parameters, "
              f"{codec.sample_rate} Hz, random weights); torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} CPUs")
        per_file_loop(codec, files[:2])  # warm-up
        rows: dict[str, list[tuple[float, float]]] = {"per-file loop": []}
        names = {w: f"voxtok extract, {w} workers" for w in args.workers}
        for name in names.values():
            rows[name] = []
        for r in range(args.repeats):
            rows["per-file loop"].append(per_file_loop(codec, files))
            for w, name in names.items():
                res = extract(codec, work / "corpus", work / f"out-{w}-{r}", batch_seconds=args.batch_seconds,
                              num_workers=w, progress=False)
                assert res.extracted == len(files) and res.errors == 0
                rows[name].append((res.audio_seconds, res.wall_seconds))
        cli_rows: dict[int, list[tuple[float, float]]] = {d: [] for d in args.cli_devices}
        for r in range(args.repeats if args.cli_devices else 0):
            for d in args.cli_devices:
                out = work / f"cli-{d}-{r}"
                w = max(args.workers)
                full = cli_extract(args.preset, work / "corpus", out, d, w, args.batch_seconds)
                noop = cli_extract(args.preset, work / "corpus", out, d, w, args.batch_seconds)
                cli_rows[d].append((full, noop))
        audio = rows["per-file loop"][0][0]
        print(f"\n{audio:.0f} s of audio ({audio / len(files):.2f} s per utterance on average); "
              f"median of {args.repeats} alternating runs; batch_seconds {args.batch_seconds:g}\n")
        print("| method | wall (s) | audio-hours per hour | RTF | vs loop |")
        print("|---|---|---|---|---|")
        base = statistics.median(w for _, w in rows["per-file loop"])
        for name, runs in rows.items():
            wall = statistics.median(w for _, w in runs)
            print(f"| {name} | {wall:.2f} | {audio / wall:.1f} | {wall / audio:.4f} | {base / wall:.2f}x |")
        if cli_rows:
            print("\n`voxtok extract` in fresh processes (one torch thread per rank, "
                  f"{max(args.workers)} workers per rank); start-up = a rerun with nothing left to do:\n")
            print("| command | wall (s) | start-up (s) | wall - start-up (s) | audio-hours per hour (without start-up) "
                  "| vs loop (without start-up) |")
            print("|---|---|---|---|---|---|")
            for d, runs in cli_rows.items():
                full = statistics.median(f for f, _ in runs)
                noop = statistics.median(n for _, n in runs)
                net = statistics.median(f - n for f, n in runs)
                print(f"| --devices {d} | {full:.2f} | {noop:.2f} | {net:.2f} | {audio / net:.1f} | "
                      f"{base / net:.2f}x |")
        if args.no_kill:
            return
        total = len(files)
        w = max(args.workers)
        # The killed child leaves semaphores behind; the tracker that cleans them up need not warn about it.
        os.environ["PYTHONWARNINGS"] = "ignore::UserWarning"
        k = kill_and_rerun(args.preset, work / "corpus", work, total, args.kill_batch_seconds, args.kill_shard_size,
                           w, kill_at=0.5, threads=args.threads)
        print(f"\nkill -9 once half the corpus is encoded, then rerun ({w} workers, batch_seconds "
              f"{args.kill_batch_seconds:g}, shard size {args.kill_shard_size}; each run a fresh process, "
              f"start-up included):")
        print("| uninterrupted (s) | killed run (s) | encoded before the kill | in complete shards | redone | "
              "rerun: ready to encode (s) | rerun: first batch done (s) | rerun total (s) | kill + rerun "
              "overhead (s) | every id once, same codes |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        overhead = k["killed_seconds"] + k["rerun_seconds"] - k["whole_seconds"]
        print(f"| {k['whole_seconds']:.1f} | {k['killed_seconds']:.1f} | {k['encoded_before_kill']} | "
              f"{k['committed_before_kill']} | {k['redone']} | {k['resume_seconds']:.1f} | "
              f"{k['first_batch_seconds']:.1f} | {k['rerun_seconds']:.1f} | {overhead:.1f} | "
              f"{k['exactly_once'] and k['final_ids'] == total and k['same_codes']} |")


if __name__ == "__main__":
    main()
