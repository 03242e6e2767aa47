"""The demo's data: shipped recordings (format, attribution), and the three sets build_corpus writes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from voxtok import audio as A
from voxtok.demo import (
    DATA,
    TRAIN_VOICES,
    VALIDATION_VOICES,
    build_corpus,
    evaluation_files,
    training_files,
    validation_files,
)
from voxtok.demo.corpus import NOISY_SNR_DB, pink_noise
from voxtok.training.synth import espeak_available

SHIPPED = training_files() + validation_files() + evaluation_files()


def test_shipped_files_are_16khz_mono_and_small() -> None:
    assert len(evaluation_files()) == 5 and len(validation_files()) >= 4
    total = 0
    for f in SHIPPED:
        x, sr = A.read(f)
        assert sr == 16000 and x.shape[0] == 1, f
        assert 1.0 < x.shape[-1] / sr < 20.0, f
        total += f.stat().st_size
    assert total < 6_000_000  # the package stays small


def test_every_shipped_file_has_source_and_licence_in_the_readme() -> None:
    readme = (DATA / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for f in SHIPPED:
        stem = f.name
        match = re.match(r"(LJ\d{3})-(\d{4})\.flac", stem)
        if match:  # LJSpeech clips are listed as a range
            row = next(r for r in rows if match.group(1) in r and f"{f.parent.name}" in _section(readme, r))
            first, last = (int(n) for n in re.findall(rf"{match.group(1)}-(\d{{4}})", row)[:2])
            assert first <= int(match.group(2)) <= last, f
        else:
            row = next((r for r in rows if f"`{stem}`" in r), None)
            assert row is not None, f"{f} is not listed in data/README.md"
        assert "public domain" in row or "CC BY 4.0" in row, row


def _section(readme: str, row: str) -> str:
    """The ``## `folder/` `` heading above ``row``."""
    head = readme[: readme.index(row)]
    return head[head.rindex("## ") :].splitlines()[0]


def test_voice_sets_are_disjoint() -> None:
    assert not set(TRAIN_VOICES) & set(VALIDATION_VOICES)
    names = [f.name for f in SHIPPED]
    assert len(names) == len(set(names))


@pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")
def test_build_corpus_writes_three_sets_and_reuses_them(tmp_path) -> None:
    corpus = build_corpus(tmp_path, train_speakers=2, utterances_per_speaker=2, validation_utterances=1)
    assert len(corpus.train) == 4 + len(training_files())
    assert len(corpus.validation) == len(VALIDATION_VOICES) + 2 * len(validation_files())
    assert [p.name for p in corpus.evaluation] == [p.name for p in evaluation_files()]
    for files, folder in ((corpus.train, corpus.train_dir), (corpus.validation, corpus.validation_dir),
                          (corpus.evaluation, corpus.evaluation_dir)):  # fmt: skip
        for p in files:
            assert p.is_file() and folder in p.parents
            x, sr = A.read(p)
            assert sr == 16000 and x.shape[0] == 1 and x.abs().max() > 0.01
    # A second call with the same settings writes nothing.
    stamp = corpus.train[0].stat().st_mtime_ns
    again = build_corpus(tmp_path, train_speakers=2, utterances_per_speaker=2, validation_utterances=1)
    assert again == corpus and corpus.train[0].stat().st_mtime_ns == stamp
    # Other settings rebuild, and a missing file is noticed.
    corpus.validation[0].unlink()
    rebuilt = build_corpus(tmp_path, train_speakers=2, utterances_per_speaker=2, validation_utterances=1)
    assert all(p.is_file() for p in rebuilt.validation)
    bigger = build_corpus(tmp_path, train_speakers=3, utterances_per_speaker=1, validation_utterances=1)
    assert len(bigger.train) == 3 + len(training_files())


def test_pink_noise_has_unit_rms_and_a_falling_spectrum() -> None:
    noise = pink_noise(64000, np.random.default_rng(0))
    assert abs(float(np.sqrt(np.mean(noise**2))) - 1.0) < 1e-6
    power = np.abs(np.fft.rfft(noise)) ** 2
    bands = [power[lo:hi].mean() for lo, hi in ((100, 200), (1000, 2000), (10000, 20000))]
    # 1/f: each decade down 10 dB (white noise would be flat)
    for low, high in zip(bands, bands[1:], strict=False):
        assert 6.0 < 10 * np.log10(low / high) < 14.0


@pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")
def test_noisy_validation_copies_have_their_snr(tmp_path) -> None:
    corpus = build_corpus(tmp_path, train_speakers=1, utterances_per_speaker=1, validation_utterances=1)
    noisy = sorted(p for p in corpus.validation if p.parent.name == "ljspeech-noisy")
    assert len(noisy) == len(validation_files())
    for i, (clean, p) in enumerate(zip(validation_files(), noisy, strict=True)):
        x, _ = A.read(clean)
        y, _ = A.read(p)
        assert p.name.startswith(clean.stem) and y.shape == x.shape
        noise = (y - x).double()
        snr = 10 * np.log10(float(x.double().pow(2).mean() / noise.pow(2).mean()))
        assert abs(snr - NOISY_SNR_DB[i % len(NOISY_SNR_DB)]) < 0.5, (p, snr)


def test_missing_flite_is_named_before_anything_is_written(tmp_path, monkeypatch) -> None:
    import voxtok.demo.corpus as C

    monkeypatch.setattr(C, "flite_available", lambda: False)
    assert any(v.startswith("flite:") for v in TRAIN_VOICES)
    with pytest.raises(RuntimeError, match="apt-get install -y flite"):
        build_corpus(tmp_path / "c")
    assert not (tmp_path / "c").exists()
