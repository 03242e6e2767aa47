"""The on-disk format: codes round-trip through Parquet, shards appear only when complete, errors stay one line
per id, and merging refuses what does not belong together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from voxtok.tokenizers import shards as S

SPEC = {"spec_version": 1, "codec": "test", "codec_hash": "sha256:00", "sample_rate": 16000, "frame_rate": 50.0,
        "hop_length": 320, "n_q": 3, "num_codebooks": 4, "codebook_sizes": [65536, 1024, 1024],
        "voxtok_version": "0"}


def _rows(n: int, seed: int = 0, prefix: str = "u") -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t = int(rng.integers(0, 40))
        codes = rng.integers(0, 1024, size=(3, t)).astype(np.int32)
        codes[0] = rng.integers(0, 65536, size=t)  # X-codec2-sized ids need int32, not int16
        rows.append({"id": f"{prefix}{i}", "path": f"/a/{i}.wav", "start": None if i % 2 else 0.5,
                     "end": None if i % 2 else 1.5, "num_samples": t * 320 - 7, "num_frames": t, "codes": codes,
                     "text": None if i % 3 else f"text {i}"})
    return rows


def _folder(tmp_path: Path, name: str = "out", spec: dict = SPEC) -> Path:
    out = tmp_path / name
    S.prepare_output(out, S.output_manifest(spec, {}))
    return out


def test_codes_round_trip_through_parquet(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    rows = _rows(9)
    f = S.ShardWriter(out, 0, SPEC).write(rows)
    table = pq.read_table(f)
    assert table.schema.field("codes").type.value_type.value_type.bit_width == 32
    assert table.column("text").to_pylist() == [r["text"] for r in rows]
    for r, codes in zip(rows, S.codes_of(table), strict=True):
        np.testing.assert_array_equal(codes, r["codes"])
    got = dict(S.read_tokens(out))
    assert list(got) == [r["id"] for r in rows]
    for r in rows:
        assert got[r["id"]].dtype.is_floating_point is False and tuple(got[r["id"]].shape) == r["codes"].shape
        np.testing.assert_array_equal(got[r["id"]].numpy(), r["codes"])
    with pytest.raises(ValueError, match="codes must be"):
        S.rows_to_table([{**rows[0], "num_frames": rows[0]["num_frames"] + 1}])


def test_writer_continues_numbering_and_clears_its_temporaries(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    w = S.ShardWriter(out, 3, SPEC)
    first = w.write(_rows(2))
    leftover = out / S.SHARDS_DIR / ".part-r0003-000002.parquet.tmp"
    leftover.write_bytes(b"half a shard")
    other = out / S.SHARDS_DIR / ".part-r0004-000001.parquet.tmp"
    other.write_bytes(b"another rank's")
    second = S.ShardWriter(out, 3, SPEC).write(_rows(2, prefix="v"))
    assert first.name == "part-r0003-000001.parquet" and second.name == "part-r0003-000002.parquet"
    assert not leftover.exists() and other.exists()  # only its own rank's temporaries
    assert S.shard_files(out) == [first, second]
    assert S.scan_done(out) == {"u0", "u1", "v0", "v1"}


def test_unreadable_shard_is_moved_aside_and_another_codec_refused(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    good = S.ShardWriter(out, 0, SPEC).write(_rows(2))
    bad = out / S.SHARDS_DIR / "part-r0001-000001.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert S.scan_done(out, SPEC) == {"u0", "u1"}
    assert S.shard_files(out) == [good] and (out / S.CORRUPT_DIR / bad.name).exists()
    assert pq.read_table(out / S.SHARDS_DIR).num_rows == 2  # the folder reads as one table again
    S.ShardWriter(out, 2, {**SPEC, "codec_hash": "sha256:ff"}).write(_rows(1, prefix="w"))
    with pytest.raises(ValueError, match="codec_hash"):
        S.scan_done(out, SPEC)


def test_output_folder_refuses_another_codec(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    S.prepare_output(out, S.output_manifest(SPEC, {"batch_seconds": 5.0}))  # same codec: fine
    with pytest.raises(ValueError, match=r"n_q: expected 2, found 3"):
        S.prepare_output(out, S.output_manifest({**SPEC, "n_q": 2}, {}))
    stray = tmp_path / "stray"
    S.ShardWriter(stray, 0, SPEC).write(_rows(1))
    with pytest.raises(ValueError, match="no manifest.json"):
        S.prepare_output(stray, S.output_manifest(SPEC, {}))


def test_errors_stay_one_line_per_id(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    (out / S.ERRORS_NAME).write_text(json.dumps({"id": "a", "path": "/a", "reason": "old"}) + "\n")
    log = S.ErrorLog(out, 0)
    log.append({"id": "a", "path": "/a", "reason": "new"})
    log.append({"id": "b", "path": "/b", "reason": "bad"})
    log.append({"id": "c", "path": "/c", "reason": "fixed later"})
    log.close()
    # A killed writer leaves half a line behind.
    (out / S.PENDING_DIR / "r0001-killed.jsonl").write_text('{"id": "d", "path": "/d", "reason": "x"}\n{"id": "e", "pa')
    merged = S.merge_errors(out, done={"c"})
    assert [(r["id"], r["reason"]) for r in merged] == [("a", "new"), ("b", "bad"), ("d", "x")]
    lines = [json.loads(x) for x in (out / S.ERRORS_NAME).read_text().splitlines()]
    assert lines == merged
    assert not list((out / S.PENDING_DIR).glob("*.jsonl"))
    assert S.merge_errors(out, done={"a", "b", "d"}) == [] and (out / S.ERRORS_NAME).read_text() == ""


def test_merge_shards(tmp_path: Path) -> None:
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    rows = _rows(6)
    S.ShardWriter(a, 0, SPEC).write(rows[:4])
    S.ShardWriter(b, 1, SPEC).write(rows[3:])  # u3 in both, same codes
    (a / S.ERRORS_NAME).write_text(json.dumps({"id": "u5", "path": "/5", "reason": "failed in a"}) + "\n"
                                   + json.dumps({"id": "z", "path": "/z", "reason": "failed"}) + "\n")
    n = S.merge_shards([a, b], tmp_path / "m", shard_size=4)
    assert n == 6
    merged = dict(S.read_tokens(tmp_path / "m"))
    assert sorted(merged) == sorted(r["id"] for r in rows)
    for r in rows:
        np.testing.assert_array_equal(merged[r["id"]].numpy(), r["codes"])
    assert [p.name for p in S.shard_files(tmp_path / "m")] == ["part-r0000-000001.parquet",
                                                                "part-r0000-000002.parquet"]
    # u5 has codes (from b), so only z is still a failure.
    assert [json.loads(x)["id"] for x in (tmp_path / "m" / S.ERRORS_NAME).read_text().splitlines()] == ["z"]
    with pytest.raises(ValueError, match="already holds shards"):
        S.merge_shards([a], tmp_path / "m")

    c = _folder(tmp_path, "c")
    other = _rows(1)
    other[0]["codes"] = other[0]["codes"] + 1
    S.ShardWriter(c, 0, SPEC).write(other)
    with pytest.raises(ValueError, match="'u0' has different codes"):
        S.merge_shards([a, c], tmp_path / "m2")
    d = _folder(tmp_path, "d", {**SPEC, "codec": "other", "codec_hash": "sha256:11"})
    with pytest.raises(ValueError, match="different codec"):
        S.merge_shards([a, d], tmp_path / "m3")


def test_datasets_reads_the_shards(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = _folder(tmp_path)
    rows = _rows(5)
    S.ShardWriter(out, 0, SPEC).write(rows[:2])
    S.ShardWriter(out, 1, SPEC).write(rows[2:])
    ds = datasets.load_dataset("parquet", data_files=str(out / S.SHARDS_DIR / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 5
    by_id = {r["id"]: r for r in ds}
    for r in rows:
        np.testing.assert_array_equal(np.asarray(by_id[r["id"]]["codes"], dtype=np.int32).reshape(r["codes"].shape),
                                      r["codes"])
        assert by_id[r["id"]]["text"] == r["text"] and by_id[r["id"]]["num_frames"] == r["num_frames"]
