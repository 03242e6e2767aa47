"""The synthetic LibriSpeech-layout corpus used by tests, benchmarks and the demo."""

from __future__ import annotations

import pytest

from voxtok import audio as A
from voxtok.training.synth import espeak_available, synthesize_corpus

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def test_corpus_layout_transcripts_and_rate(tmp_path) -> None:
    utts = synthesize_corpus(tmp_path, subsets=("train-clean-100", "dev-clean"), speakers_per_subset=2,
                             utterances_per_speaker=2, sample_rate=16000)
    assert len(utts) == 8 and len({u.id for u in utts}) == 8
    for u in utts:
        spk, chapter, _ = u.id.split("-")
        assert u.path.parent == tmp_path / u.path.parts[-4] / spk / chapter
        x, sr = A.read(u.path)
        assert sr == 16000 and x.shape[0] == 1 and 0.5 * sr < x.shape[-1] < 8 * sr
        trans = (u.path.parent / f"{spk}-{chapter}.trans.txt").read_text().splitlines()
        line = next(t for t in trans if t.startswith(u.id + " "))
        assert line.split(" ", 1)[1] == "".join(c for c in u.text.upper() if c.isalpha() or c in " '").strip()
    assert {u.path.parts[-4] for u in utts} == {"train-clean-100", "dev-clean"}
