"""Inputs of ``voxtok eval``: folders (recursive, by extension, transcripts picked up) and JSONL / CSV / TSV
manifests (path, text, start, end, id); bad rows and bad files are listed, never fatal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from voxtok import audio as A
from voxtok.eval.inputs import Item, load_item, read_inputs


def _tone(path, seconds=1.0, sr=16000, channels=1, value=None):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) if value is None else np.full(t.shape, value)
    A.write(path, torch.from_numpy(np.tile(x, (channels, 1))).float(), sr)
    return path


def test_folder_is_searched_recursively_with_transcripts(corpus, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(corpus, root)
    (root / "extra").mkdir()
    _tone(root / "extra" / "tone.wav")
    (root / "extra" / "tone.txt").write_text("a tone\n")
    (root / "extra" / "notes.md").write_text("not audio")
    items, bad = read_inputs(root)
    assert bad == []
    assert [i.id for i in items] == ["extra/tone", *sorted(f"train-clean-100/100/1000/100-1000-000{k}"
                                                           for k in range(3))]
    texts = {i.id.rsplit("/", 1)[-1]: i.text for i in items}
    assert texts["tone"] == "a tone"
    assert texts["100-1000-0000"].isupper() and len(texts["100-1000-0000"].split()) > 3  # from the trans.txt
    only_wav, _ = read_inputs(root, extensions=(".wav",))
    assert [i.id for i in only_wav] == ["extra/tone"]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv"])
def test_manifest_columns(tmp_path, kind):
    _tone(tmp_path / "a.wav", seconds=2.0)
    (tmp_path / "sub").mkdir()
    _tone(tmp_path / "sub" / "b.flac")
    rows = [{"path": "a.wav", "text": "hello there", "start": "0.5", "end": "1.5"},
            {"path": str(tmp_path / "sub" / "b.flac"), "id": "bee", "text": "", "start": "", "end": ""},
            {"path": "a.wav", "text": "again", "start": "", "end": ""}]
    manifest = tmp_path / f"m.{kind}"
    if kind == "jsonl":
        manifest.write_text("\n".join(json.dumps({k: v for k, v in r.items() if v != ""}) for r in rows) + "\n\n")
    else:
        sep = "," if kind == "csv" else "\t"
        lines = [sep.join(["path", "text", "start", "end", "id"])]
        lines += [sep.join([r["path"], r["text"], r["start"], r["end"], r.get("id", "")]) for r in rows]
        manifest.write_text("\n".join(lines) + "\n")
    items, bad = read_inputs(manifest)
    assert bad == []
    assert [i.id for i in items] == ["a@0.5-1.5", "bee", "a"]
    assert items[0] == Item("a@0.5-1.5", tmp_path / "a.wav", "hello there", 0.5, 1.5)
    assert items[1].text is None and items[1].path == tmp_path / "sub" / "b.flac"
    x, sr = load_item(items[0])
    assert sr == 16000 and x.shape == (16000,)
    full, _ = load_item(items[2])
    assert torch.equal(x, full[8000:24000])


def test_bad_manifest_rows_are_listed(tmp_path):
    _tone(tmp_path / "a.wav")
    lines = ['{"path": "a.wav"}', "not json", "[1, 2]", '{"text": "no path"}', '{"path": "a.wav", "start": -1}',
             '{"path": "a.wav", "start": 1, "end": 0.5}', '{"path": "a.wav", "start": "soon"}', '{"path": "a.wav"}']
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines))
    items, bad = read_inputs(manifest)
    assert [i.id for i in items] == ["a", "a#2"]  # the same file twice stays twice, apart
    assert [b.source for b in bad] == [f"{manifest}:{n}" for n in (2, 3, 4, 5, 6, 7)]
    reasons = [b.reason for b in bad]
    assert "not valid JSON" in reasons[0] and "JSON object" in reasons[1] and "no 'path'" in reasons[2]
    assert ">= 0" in reasons[3] and "after start" in reasons[4] and "soon" in reasons[5]


def test_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="no such folder or manifest"):
        read_inputs(tmp_path / "missing")
    (tmp_path / "m.txt").write_text("path\n")
    with pytest.raises(ValueError, match="must be one of"):
        read_inputs(tmp_path / "m.txt")
    (tmp_path / "m.csv").write_text("file,text\na.wav,hi\n")
    with pytest.raises(ValueError, match="'path' column"):
        read_inputs(tmp_path / "m.csv")


def test_bad_audio_raises_audio_error(tmp_path):
    silent = _tone(tmp_path / "silent.wav", value=0.0)
    stereo = _tone(tmp_path / "stereo.wav", channels=2)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(A.AudioError, match="silent"):
        load_item(Item("s", silent))
    with pytest.raises(A.AudioError, match="corrupt.wav"):
        load_item(Item("c", tmp_path / "corrupt.wav"))
    with pytest.raises(A.AudioError, match="outside the file"):
        load_item(Item("late", stereo, start=5.0))
    with pytest.raises(A.AudioError, match="past the end"):
        load_item(Item("long", stereo, start=0.5, end=3.0))
    x, sr = load_item(Item("st", stereo))
    assert x.dim() == 1 and x.shape[0] == sr  # mixed to mono
