"""The synthetic LibriSpeech-layout corpus used by tests, benchmarks and the demo."""

from __future__ import annotations

import pytest

from voxtok import audio as A
from voxtok.training.synth import espeak_available, flite_available, speak, synthesize_corpus

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


@pytest.mark.skipif(not flite_available(), reason="needs flite")
def test_flite_voices_follow_speed_and_pitch(tmp_path) -> None:
    import numpy as np

    text = "The birch canoe slid on the smooth planks."
    slow = A.read(speak(text, tmp_path / "slow.wav", "flite:slt", speed=140, pitch=50))
    fast = A.read(speak(text, tmp_path / "fast.wav", "flite:slt", speed=200, pitch=50))
    low = A.read(speak(text, tmp_path / "low.wav", "flite:awb", speed=175, pitch=10))
    high = A.read(speak(text, tmp_path / "high.wav", "flite:awb", speed=175, pitch=90))
    assert slow[1] == 16000 and slow[0].shape[0] == 1
    assert slow[0].shape[-1] > 1.2 * fast[0].shape[-1]

    def median_f0(x) -> float:
        import librosa

        y = x[0][0].numpy()
        f0 = librosa.yin(y, fmin=50, fmax=400, sr=16000, frame_length=1024)
        loud = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0] > 0.02
        return float(np.median(f0[: len(loud)][loud[: len(f0)]]))

    # pitch 10 and 90 ask for 0.76 and 1.24 times the voice's mean pitch
    assert median_f0(high) > 1.3 * median_f0(low)
    with pytest.raises(ValueError, match="unknown flite voice"):
        speak(text, tmp_path / "x.wav", "flite:nobody")


@pytest.mark.skipif(not flite_available(), reason="needs flite")
def test_corpus_mixes_espeak_and_flite_voices(tmp_path) -> None:
    utts = synthesize_corpus(tmp_path, ("train-clean-100",), 2, 1, voices=("en-us+m1", "flite:awb"))
    assert len(utts) == 2
    for u in utts:
        x, sr = A.read(u.path)
        assert sr == 16000 and x.shape[-1] > 8000 and x.abs().max() > 0.01
