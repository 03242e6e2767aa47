"""Data modules: LibriSpeech layout and transcripts, folders and manifests, crops and padding, bad files, and a
data order that depends on the seed and the epoch only (so a resumed run sees the same batches)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxtok import audio as A
from voxtok.training import AudioFolderDataModule, LibriSpeechDataModule
from voxtok.training.data import EpochSampler
from voxtok.training.datasets import crop_text

TRAIN, VAL = "train-clean-100", "dev-clean"


def _module(root: Path, **kw) -> LibriSpeechDataModule:
    args = dict(train_subsets=[TRAIN], val_subsets=[VAL], sample_rate=16000, segment_seconds=0.25, batch_size=2,
                num_workers=0)  # fmt: skip
    args.update(kw)
    dm = LibriSpeechDataModule(root, **args)
    dm.setup("fit")
    return dm


def _transcripts(root: Path, subset: str) -> dict[str, str]:
    out = {}
    for f in (root / subset).glob("*/*/*.trans.txt"):
        for line in f.read_text().splitlines():
            uid, text = line.split(" ", 1)
            out[uid] = text
    return out


def _batches(loader) -> list[dict]:
    return [b for b in loader]


def test_librispeech_items_transcripts_and_batches(corpus: Path) -> None:
    dm = _module(corpus)
    trans = _transcripts(corpus, TRAIN)
    assert {u.id for u in dm.train_items} == set(trans) and len(trans) == 12
    for u in dm.train_items:
        assert u.text == trans[u.id] and Path(u.path).name == f"{u.id}.flac"
    assert {u.id for u in dm.val_items} == set(_transcripts(corpus, VAL))
    batches = _batches(dm.train_dataloader())
    assert len(batches) == 6  # 12 utterances, batch 2, one rank
    seen = []
    for b in batches:
        assert b["audio"].shape == (2, 1, 4000) and b["audio"].dtype == torch.float32
        assert torch.equal(b["lengths"], torch.tensor([4000, 4000]))
        assert b["audio"].abs().max() <= 1.0 and b["audio"].abs().sum() > 0
        for uid, text, off, total in zip(b["id"], b["text"], b["offset"], b["total"], strict=True):
            words = trans[uid].split()
            got = text.split()
            # a crop carries the words heard in it: a non-empty run of the transcript's words, in order
            starts = [i for i in range(len(words)) if words[i : i + len(got)] == got]
            assert got and starts, (uid, text, trans[uid])
            assert 0 <= off and off + 4000 <= total
            seen.append(uid)
    assert sorted(seen) == sorted(trans)  # one epoch visits every utterance once


def test_crop_audio_matches_the_file(corpus: Path) -> None:
    dm = _module(corpus)
    b = next(iter(dm.train_dataloader()))
    uid, off = b["id"][0], int(b["offset"][0])
    path = next(u.path for u in dm.train_items if u.id == uid)
    x, sr = A.read(path)
    assert sr == 16000
    np.testing.assert_allclose(b["audio"][0, 0].numpy(), x[0, off : off + 4000].numpy(), atol=1e-6)


def test_short_utterances_are_padded_with_their_length(corpus: Path) -> None:
    dm = _module(corpus, segment_seconds=20.0)  # longer than any utterance
    b = next(iter(dm.train_dataloader()))
    assert b["audio"].shape[-1] == 320000
    for i in range(2):
        n = int(b["lengths"][i])
        assert 0 < n < 320000 and int(b["total"][i]) == n and int(b["offset"][i]) == 0
        assert b["audio"][i, :, n:].abs().max() == 0 and b["audio"][i, :, :n].abs().max() > 0.05
        assert b["text"][i] == _transcripts(corpus, TRAIN)[b["id"][i]]  # the whole utterance: the whole transcript


def test_segment_rounds_up_to_whole_codec_frames(corpus: Path) -> None:
    dm = _module(corpus, segment_seconds=0.1)
    dm._hop = 300  # what setup reads from the codec being trained
    assert dm.segment_samples == 1800  # 1600 samples -> 6 frames of 300


def test_missing_subset_fails_at_once_naming_it(corpus: Path) -> None:
    dm = LibriSpeechDataModule(corpus, train_subsets=[TRAIN, "train-clean-360"], sample_rate=16000)
    with pytest.raises(ValueError, match="train-clean-360"):
        dm.setup("fit")


def test_corrupt_files_are_skipped_and_counted(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "LibriSpeech"
    shutil.copytree(corpus, root)
    files = sorted((root / TRAIN).rglob("*.flac"))
    files[3].write_bytes(files[3].read_bytes()[:200])  # truncated FLAC
    files[7].write_bytes(b"")  # empty file
    dm = _module(root)
    skipped = [p for b in _batches(dm.train_dataloader()) for p in b["skipped"]]
    assert sorted(set(skipped)) == sorted({str(files[3]), str(files[7])})
    assert len(skipped) == 2  # each drawn once per epoch, replaced by the next utterance
    # a corrupt file never reaches a batch: every batch is full and finite
    for b in _batches(dm.train_dataloader()):
        assert torch.isfinite(b["audio"]).all() and torch.equal(b["lengths"], torch.tensor([4000, 4000]))


def test_every_file_failing_stops_with_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.wav").write_bytes(b"RIFF not really audio")
    dm = AudioFolderDataModule(folder, sample_rate=16000, batch_size=2, num_workers=0)
    dm.setup("fit")
    with pytest.raises(A.AudioError, match=r"every one of the 4 utterances failed.*0\.wav"):
        next(iter(dm.train_dataloader()))


def test_nan_file_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"ok{i}.wav", np.sin(np.arange(8000) / 10).astype(np.float32) * 0.3, 16000,
                 subtype="FLOAT")
    bad = np.zeros(8000, dtype=np.float32)
    bad[::50] = np.nan  # every crop holds some (crops are checked, not whole files)
    sf.write(folder / "nan.wav", bad, 16000, subtype="FLOAT")
    dm = AudioFolderDataModule(folder, sample_rate=16000, segment_seconds=0.1, batch_size=1, num_workers=0)
    dm.setup("fit")
    batches = _batches(dm.train_dataloader())
    assert [p for b in batches for p in b["skipped"]] == [str(folder / "nan.wav")]
    assert all(torch.isfinite(b["audio"]).all() for b in batches)


def test_folder_resamples_and_mixes_to_mono(tmp_path: Path) -> None:
    folder = tmp_path / "audio" / "sub"
    folder.mkdir(parents=True)
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    sf.write(folder / "a.wav", stereo.astype(np.float32), 44100)
    (folder / "a.txt").write_text("hello there\n")
    dm = AudioFolderDataModule(tmp_path / "audio", sample_rate=24000, segment_seconds=0.5, batch_size=1,
                               num_workers=0, val=tmp_path / "audio")  # fmt: skip
    dm.setup("fit")
    assert [(u.id, u.text) for u in dm.train_items] == [("sub/a", "hello there")]
    b = next(iter(dm.val_dataloader()))
    assert b["audio"].shape == (1, 1, 24000) and int(b["lengths"][0]) == 24000
    ref = A.resample(torch.from_numpy(stereo.T.mean(0, keepdims=True)).float(), 44100, 24000)
    np.testing.assert_allclose(b["audio"][0].numpy(), ref.numpy(), atol=1e-4)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv"])
def test_manifest_rows_with_windows_and_text(tmp_path: Path, kind: str) -> None:
    audio = tmp_path / "clips"
    audio.mkdir()
    ramp = (np.arange(16000, dtype=np.float32) / 16000) * 0.5
    sf.write(audio / "ramp.wav", ramp, 16000, subtype="FLOAT")
    rows = [{"path": "clips/ramp.wav", "text": "a ramp", "start": 0.25, "end": 0.5, "id": "r1"},
            {"path": str(audio / "ramp.wav")}]  # fmt: skip
    manifest = tmp_path / f"m.{kind}"
    if kind == "jsonl":
        manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        sep = "," if kind == "csv" else "\t"
        keys = ["path", "text", "start", "end", "id"]
        lines = [sep.join(keys)] + [sep.join(str(r.get(k, "")) for k in keys) for r in rows]
        manifest.write_text("\n".join(lines) + "\n")
    dm = AudioFolderDataModule(manifest, val=manifest, sample_rate=16000, batch_size=2, num_workers=0,
                               val_max_seconds=None)  # fmt: skip
    dm.setup("fit")
    assert [(u.id, u.text, u.start, u.end) for u in dm.train_items] == [("r1", "a ramp", 0.25, 0.5),
                                                                        ("ramp", None, 0.0, None)]
    b = next(iter(dm.val_dataloader()))
    assert b["lengths"].tolist() == [4000, 16000] and b["text"] == ["a ramp", None]
    np.testing.assert_allclose(b["audio"][0, 0, :4000].numpy(), ramp[4000:8000], atol=1e-6)


def test_manifest_errors_name_the_row(tmp_path: Path) -> None:
    m = tmp_path / "m.jsonl"
    m.write_text('{"path": "a.wav"}\n{"text": "no path"}\n')
    dm = AudioFolderDataModule(m, sample_rate=16000)
    with pytest.raises(ValueError, match="row 2"):
        dm.setup("fit")


def _order(loader) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    return [(tuple(b["id"]), b["audio"]) for b in loader]


def test_order_is_a_function_of_seed_and_epoch(corpus: Path) -> None:
    a = _module(corpus, num_workers=0).train_dataloader()
    b = _module(corpus, num_workers=2).train_dataloader()
    epochs = []
    for epoch in (0, 1):
        a.sampler.set_epoch(epoch)
        b.sampler.set_epoch(epoch)
        oa, ob = _order(a), _order(b)
        assert [i for i, _ in oa] == [i for i, _ in ob]  # the worker count changes nothing
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(oa, ob, strict=True))
        epochs.append(oa)
    assert [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]
    other = _module(corpus, seed=1).train_dataloader()
    assert [i for i, _ in _order(other)] != [i for i, _ in epochs[0]]


def test_loader_state_resumes_mid_epoch(corpus: Path) -> None:
    loader = _module(corpus).train_dataloader()
    loader.sampler.set_epoch(1)
    full = _order(loader)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    fresh = _module(corpus).train_dataloader()
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(1)
    rest = _order(fresh)
    assert [i for i, _ in rest] == [i for i, _ in full[2:]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(rest, full[2:], strict=True))
    assert fresh.state_dict() == {"epoch": 1, "batches": len(full)}
    assert len(_order(fresh)) == len(full)  # the next pass is a whole epoch again


def test_sampler_shards_ranks_disjointly() -> None:
    seen = []
    for rank in range(3):
        s = EpochSampler(20, batch_size=2, seed=0, rank=rank, world_size=3)
        s.set_epoch(4)
        keys = list(s)
        assert len(keys) == len(s) == 6  # 20 // 3 = 6 per rank, a whole number of batches
        seen += [i for i, _ in keys]
    assert len(seen) == len(set(seen)) == 18
    with pytest.raises(ValueError, match="fewer than one batch per rank"):
        EpochSampler(5, batch_size=2, world_size=3)


def test_crop_text_keeps_words_in_the_crop() -> None:
    text = "ONE TWO THREE FOUR"
    assert crop_text(text, 0, 100, 100) == text
    assert crop_text(text, 0, 50, 100) == "ONE TWO"
    assert crop_text(text, 50, 50, 100) == "THREE FOUR"
    assert crop_text(text, 99, 1, 100) == "FOUR"  # never empty: the nearest word
    assert crop_text(None, 0, 10, 100) is None


def test_noise_floor_augmentation(tmp_path: Path) -> None:
    # Digital silence (a synthetic utterance's pauses) gets white noise at the drawn RMS level, the same for the same
    # seed; without noise_db the crop is untouched.
    from voxtok.training.datasets import CropDataset, Utterance

    x = np.zeros(8000, dtype=np.float32)
    x[2000:3000] = 0.5 * np.sin(np.arange(1000) / 5.0)
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    items = [Utterance(str(tmp_path / "a.flac"), "a")]
    plain = CropDataset(items, 16000, 4000)[(0, 7)]["audio"]
    noisy_ds = CropDataset(items, 16000, 4000, noise_db=(-50.0, -50.0))
    noisy, again = noisy_ds[(0, 7)]["audio"], noisy_ds[(0, 7)]["audio"]
    assert torch.equal(noisy, again)
    added = noisy - plain
    rms_db = 20 * torch.log10(added.pow(2).mean().sqrt())
    assert float(rms_db) == pytest.approx(-50.0, abs=0.5)
    assert not torch.equal(noisy_ds[(0, 8)]["audio"], noisy)
    with pytest.raises(ValueError, match="noise_db must be"):
        CropDataset(items, 16000, 4000, noise_db=(-40.0, -60.0))
