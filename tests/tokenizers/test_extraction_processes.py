"""``voxtok extract`` as separate processes: killed with SIGKILL mid-run and rerun, and run as two DDP ranks (gloo on
the CPU). Both must end with the records one uninterrupted process writes, bit for bit."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from extraction_data import cli, make_corpus, save_codec  # noqa: I001 (test helper beside this file)

from voxtok.tokenizers import extract, read_tokens
from voxtok.tokenizers import shards as S

BATCH_SECONDS = 0.7  # one or two clips per batch: many batches, so a kill lands mid-run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, speakers=3, per_speaker=4, seed=1)
    return root


@pytest.fixture(scope="module")
def codec_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_codec(tmp_path_factory.mktemp("codec") / "model", corpus)


@pytest.fixture(scope="module")
def reference(corpus: Path, codec_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Records of one uninterrupted in-process run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = extract(codec_dir, corpus, out, batch_seconds=BATCH_SECONDS, num_workers=0, progress=False)
    assert result.extracted == 13
    return _records(out)


def _records(out: Path) -> dict[str, dict]:
    rows = {}
    for f in S.shard_files(out):
        table = pq.read_table(f)  # every complete shard must be readable
        for row, codes in zip(table.drop_columns(["codes"]).to_pylist(), S.codes_of(table, str(f)), strict=True):
            assert row["id"] not in rows, f"{row['id']} stored twice"
            rows[row["id"]] = {**row, "codes": codes.tolist()}
    return rows


def _args(codec_dir: Path, corpus: Path, out: Path, *extra: str) -> list:
    return ["extract", codec_dir, "--input", corpus, "--output", out, "--batch-seconds", str(BATCH_SECONDS),
            "--no-progress", *extra]


def test_kill_9_mid_run_then_rerun_stores_every_utterance_once(corpus: Path, codec_dir: Path, reference: dict,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _args(codec_dir, corpus, out, "--shard-size", "1", "--num-workers", "1")
    proc = cli(*args)
    deadline = time.monotonic() + 300
    while not S.shard_files(out):
        if proc.poll() is not None:
            pytest.fail(f"extract ended before its first shard (status {proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no shard within 300 s")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    done = _records(out)
    assert 1 <= len(done) < len(reference), "the kill should land mid-run"
    again = cli(*args)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    assert f"{len(reference) - len(done)} now, {len(done)} already done" in log, log
    final = _records(out)
    assert final == reference  # every id once, and the codes of an uninterrupted run
    assert dict(read_tokens(out)).keys() == reference.keys()
    assert not list((out / S.SHARDS_DIR).glob(".*"))  # no temporary left behind
    assert (out / "manifest.json").is_file() and not (out / S.ERRORS_NAME).exists()


def test_two_ddp_ranks_write_what_one_process_writes(corpus: Path, codec_dir: Path, reference: dict,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli(*_args(codec_dir, corpus, out, "--devices", "2", "--num-workers", "0", "--shard-size", "2"))
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log
    assert "on 2 processes" in log and f"{len(reference)} now" in log, log
    ranks = {p.name.split("-")[1] for p in S.shard_files(out)}
    assert ranks == {"r0000", "r0001"}  # both ranks wrote shards
    got = _records(out)
    assert got.keys() == reference.keys()
    for rid, row in reference.items():
        assert got[rid] == row, rid
    tokens = dict(read_tokens(out))
    assert all(isinstance(t, torch.Tensor) for t in tokens.values()) and len(tokens) == len(reference)


@pytest.mark.slow
def test_several_kills_at_random_moments_then_rerun(corpus: Path, codec_dir: Path, reference: dict,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _args(codec_dir, corpus, out, "--shard-size", "1", "--num-workers", "2")
    rng = random.Random(0)
    for _ in range(3):
        proc = cli(*args)
        time.sleep(rng.uniform(2.0, 12.0))  # from start-up (imports, planning) to mid-run
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        _records(out)  # whatever is there is readable, and no id is stored twice
    again = cli(*args)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    assert _records(out) == reference


@pytest.mark.slow
def test_ddp_refuses_another_codec_on_every_rank(corpus: Path, codec_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = cli(*_args(codec_dir, corpus, out, "--num-workers", "0"))
    assert first.wait(timeout=600) == 0
    other = save_codec(tmp_path / "other", corpus, seed=1)
    proc = cli(*_args(other, corpus, out, "--devices", "2", "--num-workers", "0"))
    log = proc.communicate(timeout=600)[0]  # must stop, not wait for a rank that gave up
    assert proc.returncode != 0 and "codec_hash" in log, log
