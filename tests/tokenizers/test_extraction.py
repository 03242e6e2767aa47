"""``extract`` in one process: batched codes equal each file encoded alone, bad files are recorded once and skipped,
segments and text, hostile ids, reruns, refusal of another codec, ``--verify``, and the CLI's exit status."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from extraction_data import assert_codes_match, make_corpus, reference, save_codec  # noqa: I001 (test helper beside this file)

import voxtok
from voxtok import audio as A
from voxtok.cli import main
from voxtok.codecs.spec import codec_spec
from voxtok.tokenizers import extract, read_tokens
from voxtok.tokenizers import shards as S
from voxtok.tokenizers.batching import load_record, make_batches, probe_durations
from voxtok.tokenizers.extraction import EXIT_PARTIAL, EXIT_VERIFY, encode_batch, verify_output
from voxtok.tokenizers.manifest import Record, list_folder

BATCH_SECONDS = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root)
    return root


@pytest.fixture(scope="module")
def codec_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_codec(tmp_path_factory.mktemp("codec") / "model", corpus)


@pytest.fixture(scope="module")
def codec(codec_dir: Path) -> voxtok.Codec:
    return voxtok.load(codec_dir).eval()


@pytest.fixture(scope="module")
def single(corpus: Path, codec_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("single") / "out"
    result = extract(codec_dir, corpus, out, batch_seconds=BATCH_SECONDS, num_workers=0, shard_size=4,
                     progress=False)
    return out, result


def test_extraction_stores_exactly_the_codecs_codes_for_its_batches(corpus: Path, codec: voxtok.Codec,
                                                                    single) -> None:
    out, result = single
    files = list_folder(corpus)
    assert result.exit_status == 0 and result.extracted == result.total == len(files) == 9
    assert result.errors == 0 and result.audio_seconds > 0 and result.speed > 0
    got = dict(read_tokens(out))
    assert sorted(got) == [r.id for r in files]
    # The same batches again, by hand: the stored codes are bit for bit what Codec.encode gives for each.
    batches = make_batches(probe_durations(files), BATCH_SECONDS)
    assert max(map(len, batches)) >= 3 and len(batches) < len(files)  # padded batches of unequal lengths
    for b in batches:
        items = [load_record(files[i], codec.sample_rate) for i in b]
        lengths = torch.tensor([len(x) for x in items])
        audio = torch.zeros(len(b), 1, int(lengths.max()))
        for j, x in enumerate(items):
            audio[j, 0, : len(x)] = x
        tokens = codec.encode(audio, lengths, sample_rate=codec.sample_rate)
        latents = codec.encode_latents(audio, lengths, sample_rate=codec.sample_rate)
        for j, i in enumerate(b):
            n = int(tokens.lengths[j])
            assert got[files[i].id].dtype == torch.int64
            assert torch.equal(got[files[i].id], tokens.codes[j, :, :n]), files[i].id
            # ... and those are codes of latents within float rounding of the file's own, encoded alone.
            alone = codec.encode_latents(items[j][None, None], sample_rate=codec.sample_rate)[0]
            torch.testing.assert_close(latents[j, :, :n], alone, atol=1e-5, rtol=0)
    for r in files:
        want = reference(codec, Path(r.path))
        assert len(np.unique(want[0])) > 4  # codes vary from frame to frame, so comparing them means something
        assert_codes_match(got[r.id].numpy(), want, r.id)
    rows = {row["id"]: row for f in S.shard_files(out)
            for row in S.pq.read_table(f, columns=["id", "path", "num_samples", "num_frames"]).to_pylist()}
    stereo = rows["stereo.wav"]
    assert stereo["num_samples"] == A.resampled_length(sf.info(corpus / "stereo.wav").frames, 44100, 24000)
    assert stereo["num_frames"] == codec.encoded_length(stereo["num_samples"])
    assert Path(stereo["path"]) == corpus / "stereo.wav"
    assert len(S.shard_files(out)) >= 2  # shard_size 4: shards close after the batch that fills them
    manifest = json.loads((out / "manifest.json").read_text())
    spec = codec_spec(codec)
    assert {k: manifest[k] for k in spec} == spec
    assert manifest["batch_seconds"] == BATCH_SECONDS and manifest["codes_layout"].startswith("codes[q][t]")


def test_one_item_batches_equal_each_file_alone_bit_for_bit(corpus: Path, codec_dir: Path, codec: voxtok.Codec,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract(codec_dir, corpus, out, batch_seconds=1e-3, num_workers=0, progress=False)
    got = dict(read_tokens(out))
    for r in list_folder(corpus):
        np.testing.assert_array_equal(got[r.id].numpy(), reference(codec, Path(r.path)), err_msg=r.id)


def test_rerun_skips_done_work_and_refuses_another_codec(single, corpus: Path, codec_dir: Path,
                                                         tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(single[0], out)
    before = {p.name: p.stat().st_mtime_ns for p in S.shard_files(out)}
    again = extract(codec_dir, corpus, out, batch_seconds=BATCH_SECONDS, num_workers=0, progress=False)
    assert (again.extracted, again.done_before, again.exit_status) == (0, 9, 0)
    assert {p.name: p.stat().st_mtime_ns for p in S.shard_files(out)} == before
    other = save_codec(tmp_path / "other", corpus, seed=1)
    with pytest.raises(ValueError, match="codec_hash: expected"):
        extract(other, corpus, out, num_workers=0, progress=False)
    with pytest.raises(ValueError, match="n_q: expected 2, found 4"):
        extract(codec_dir, corpus, out, n_q=2, num_workers=0, progress=False)
    assert main(["extract", str(other), "--input", str(corpus), "--output", str(out), "--no-progress"]) == 1
    assert "different codec" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in S.shard_files(out)} == before


def _truncated_wav(path: Path) -> None:
    A.write(path, 0.1 * torch.ones(1, 4000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still declares the full data chunk
    assert struct.unpack("<I", data[40:44])[0] == 8000


def test_bad_files_are_recorded_once_and_the_rest_extracted(corpus: Path, codec_dir: Path, codec: voxtok.Codec,
                                                            tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    shutil.copytree(corpus, src)
    _truncated_wav(src / "corrupt.wav")
    (src / "empty.wav").write_bytes(b"")
    (src / "notes.flac").write_text("these are not audio samples\n" * 20)
    nan = np.zeros((3000, 1), np.float32)
    nan[1234] = np.nan
    sf.write(src / "nan.wav", nan, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    bad = {"corrupt.wav": "truncated", "empty.wav": "empty file", "notes.flac": "not readable as audio",
           "nan.wav": "non-finite"}

    def check_errors() -> None:
        lines = [json.loads(x) for x in (out / S.ERRORS_NAME).read_text().splitlines()]
        assert sorted(x["id"] for x in lines) == sorted(bad)  # each once
        for x in lines:
            assert bad[x["id"]] in x["reason"] and Path(x["path"]) == src / x["id"]

    # Two reader processes: failures cross the worker boundary as records, not exceptions.
    result = extract(codec_dir, src, out, batch_seconds=BATCH_SECONDS, num_workers=2, progress=False)
    assert (result.extracted, result.failed, result.errors, result.exit_status) == (9, 4, 4, EXIT_PARTIAL)
    check_errors()
    assert sorted(dict(read_tokens(out))) == sorted(r.id for r in list_folder(corpus))
    # A rerun retries the failures (they may have been fixed); they fail again and are still listed once.
    assert main(["extract", str(codec_dir), "--input", str(src), "--output", str(out), "--num-workers", "0",
                 "--no-progress"]) == EXIT_PARTIAL
    summary = capsys.readouterr().out
    assert "4 failed" in summary and "0 now, 9 already done" in summary
    check_errors()
    # Fixing a file and rerunning extracts it and drops it from errors.jsonl.
    A.write(src / "empty.wav", 0.1 * torch.ones(1, 3000), 16000)
    del bad["empty.wav"]
    result = extract(codec_dir, src, out, batch_seconds=BATCH_SECONDS, num_workers=0, progress=False)
    assert (result.extracted, result.errors) == (1, 3)
    check_errors()
    assert_codes_match(dict(read_tokens(out))["empty.wav"].numpy(), reference(codec, src / "empty.wav"))


def test_manifest_segments_text_and_hostile_ids(corpus: Path, codec_dir: Path, codec: voxtok.Codec,
                                                tmp_path: Path) -> None:
    files = sorted(corpus.rglob("*.flac"))
    hostile = ["../../escape", "/etc/passwd", "a b/../../c d", "..", "x\ny", "shards/part-r0000-000001.parquet",
               "manifest.json", "errors.jsonl", "ünï cödé"]
    rows = [{"id": rid, "path": os.path.relpath(files[i % len(files)], tmp_path), "text": f"text {i}"}
            for i, rid in enumerate(hostile)]
    rows += [{"id": "seg-a", "path": str(files[0]), "start": 0.05, "end": 0.2, "text": "first part"},
             {"id": "seg-b", "path": str(files[0]), "start": 0.1},
             {"id": "seg-c", "path": str(files[1]), "end": 0.15},
             {"id": "seg-past-end", "path": str(files[1]), "start": 0.1, "end": 30.0}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    outside = {p for p in tmp_path.rglob("*")}
    # One utterance per batch, so each segment's codes must equal Codec.encode of its samples bit for bit.
    result = extract(codec_dir, manifest, out, batch_seconds=1e-3, num_workers=0, shard_size=5, progress=False)
    assert (result.extracted, result.errors) == (len(rows) - 1, 1)
    # Nothing was written outside the output folder, and inside it only the extraction's own layout.
    created = {p for p in tmp_path.rglob("*")} - outside
    assert all(out in p.parents or p == out for p in created)
    for p in created:
        rel = p.relative_to(out).as_posix()
        assert rel in (".", "manifest.json", "errors.jsonl", "shards", S.PENDING_DIR) or \
            S._SHARD.match(p.name) and p.parent.name == "shards", rel
    table = {r["id"]: r for f in S.shard_files(out) for r in S.pq.read_table(f).to_pylist()}
    assert sorted(table) == sorted(r["id"] for r in rows[:-1])
    got = dict(read_tokens(out))
    for r in rows[:-1]:
        want = reference(codec, Path(r["path"]) if os.path.isabs(r["path"]) else tmp_path / r["path"],
                         r.get("start"), r.get("end"))
        np.testing.assert_array_equal(got[r["id"]].numpy(), want, err_msg=repr(r["id"]))
        assert table[r["id"]]["text"] == r.get("text")
        assert (table[r["id"]]["start"], table[r["id"]]["end"]) == (r.get("start"), r.get("end"))
    (err,) = [json.loads(x) for x in (out / S.ERRORS_NAME).read_text().splitlines()]
    assert err["id"] == "seg-past-end" and "past the end of the file" in err["reason"] and err["end"] == 30.0


def test_n_q_verify_and_a_detected_mismatch(single, corpus: Path, codec_dir: Path, codec: voxtok.Codec,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = extract(codec_dir, corpus, out, batch_seconds=BATCH_SECONDS, num_workers=0, n_q=2, verify=4,
                     progress=False)
    assert result.verify is not None and result.verify.ok and result.verify.tail == 0
    assert len(result.verify.checked) == 4 and result.exit_status == 0
    full = dict(read_tokens(single[0]))
    for rid, codes in read_tokens(out):
        assert codes.shape[0] == 2
        assert torch.equal(codes, full[rid][:2])  # same batches, so the same codes
    # Shift one utterance's codes by a frame (an off-by-one a reader could make): verify must notice it.
    f = S.shard_files(out)[0]
    table = S.pq.read_table(f)
    rows = table.drop_columns(["codes"]).to_pylist()
    codes = S.codes_of(table)
    codes[0] = np.roll(codes[0], 1, axis=1)
    f.unlink()
    S.ShardWriter(out, 0, codec_spec(codec, 2)).write([{**r, "codes": c} for r, c in zip(rows, codes, strict=True)])
    report = verify_output(out, codec, k=100)
    assert not report.ok and len(report.checked) == 9
    assert [c["id"] for c in report.checked if not report.passes(c)] == [rows[0]["id"]]
    assert "MISMATCH in 1" in report.summary()
    result = extract(codec_dir, corpus, out, num_workers=0, n_q=2, verify=100, progress=False)
    assert result.exit_status == EXIT_VERIFY


def test_a_batch_the_codec_rejects_is_retried_item_by_item(codec: voxtok.Codec, corpus: Path) -> None:
    recs = [Record(str(i), str(p)) for i, p in enumerate(sorted(corpus.rglob("*.flac"))[:3])]
    audio = [A.resample(A.read(r.path)[0], 16000, codec.sample_rate)[0] for r in recs]
    lengths = torch.tensor([len(x) for x in audio])
    batch = {"audio": torch.zeros(3, 1, int(lengths.max())), "lengths": lengths, "indices": [0, 1, 2],
             "errors": []}
    for i, x in enumerate(audio):
        batch["audio"][i, 0, : len(x)] = x
    batch["audio"][1, 0, 5] = float("nan")  # the codec refuses the whole batch for this item
    rows, errors = encode_batch(codec, batch, recs, None)
    assert [r["id"] for r in rows] == ["0", "2"]
    assert [(rec.id, "non-finite" in why) for rec, why in errors] == [("1", True)]
    np.testing.assert_array_equal(rows[1]["codes"], reference(codec, Path(recs[2].path)))


def test_datasets_reads_an_extraction(single, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = single[0]
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards" / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    tokens = dict(read_tokens(out))
    assert sorted(ds["id"]) == sorted(tokens)
    for row in ds:
        assert torch.equal(torch.tensor(row["codes"]), tokens[row["id"]])
        assert len(row["codes"][0]) == row["num_frames"]


def test_an_input_without_audio_is_refused(codec_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=r"holds no audio files \(wav, flac"):
        extract(codec_dir, tmp_path / "in", tmp_path / "out", num_workers=0, progress=False)
    assert not (tmp_path / "out").exists()
