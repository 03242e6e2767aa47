"""Input listing: folders by extension, JSONL / JSON / CSV / TSV manifests, and the errors a listing refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxtok.tokenizers.manifest import Record, list_folder, list_inputs, read_manifest


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_folder_ids_are_relative_paths_with_extension(tmp_path: Path) -> None:
    for name in ("a/b/one.wav", "a/b/one.flac", "two.FLAC", "c/three.mp3", "notes.txt", ".hidden.wav",
                 ".cache/x.wav", "noext"):
        _touch(tmp_path / name)
    recs = list_folder(tmp_path)
    assert [r.id for r in recs] == ["a/b/one.flac", "a/b/one.wav", "c/three.mp3", "two.FLAC"]
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in recs)
    assert [r.id for r in list_folder(tmp_path, ["wav"])] == ["a/b/one.wav"]
    with pytest.raises(ValueError, match="at least one"):
        list_folder(tmp_path, [])


def test_manifest_formats_give_the_same_records(tmp_path: Path) -> None:
    audio = _touch(tmp_path / "audio" / "x.wav")
    rows = [{"id": "u1", "path": "audio/x.wav", "start": 0.5, "end": 1.25, "text": "hello, world"},
            {"id": "u2", "path": str(audio)},
            {"path": "audio/x.wav", "duration": 3.0}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "m.json").write_text(json.dumps(rows))
    header = ["id", "path", "start", "end", "text", "duration"]
    for name, sep in (("m.csv", ","), ("m.tsv", "\t")):
        lines = [sep.join(header)]
        for r in rows:
            cells = [str(r.get(k, "")) for k in header]
            lines.append(sep.join(f'"{c}"' if sep in c else c for c in cells))
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    expected = [Record("u1", str(audio), 0.5, 1.25, "hello, world", 0.75), Record("u2", str(audio)),
                Record("audio/x.wav", str(audio), duration=3.0)]
    for name in ("m.jsonl", "m.json", "m.csv", "m.tsv"):
        assert read_manifest(tmp_path / name) == expected, name
        assert list_inputs(tmp_path / name) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "path": "x.wav"}\nnot json\n', r"m\.jsonl:2: not a JSON object"),
        ('{"id": "a"}\n', r"m\.jsonl:1: 'path' must be a non-empty string"),
        ('{"id": "a", "path": "x.wav"}\n{"id": "a", "path": "y.wav"}\n', r":2: id 'a' is already used on line 1"),
        ('{"path": "x.wav", "start": 2, "end": 1}\n', r"end must be > start"),
        ('{"path": "x.wav", "start": -1}\n', r"start must be >= 0"),
        ('{"path": "x.wav", "end": "soon"}\n', r"'end' must be a number of seconds"),
        ('{"path": "x.wav", "start": NaN}\n', r"finite"),
        ('{"path": "x.wav", "text": 3}\n', r"'text' must be a string"),
        ('["x.wav"]\n', r"expected an object"),
    ],
)
def test_malformed_manifests_are_refused_with_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "m.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_manifest(tmp_path / "m.jsonl")


def test_table_manifest_errors(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,file\na,x.wav\n")
    with pytest.raises(ValueError, match="'path' column"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("id,path\na,x.wav,extra\n")
    with pytest.raises(ValueError, match=r"m\.csv:2: 3 fields"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.txt").write_text("")
    with pytest.raises(ValueError, match="unknown manifest kind"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ValueError, match="neither a folder nor a manifest"):
        list_inputs(tmp_path / "missing")
