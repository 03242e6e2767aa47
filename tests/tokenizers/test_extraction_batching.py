"""Batching and reading for extraction: buckets bounded by padded seconds, disjoint rank slices, segment reads,
and a worker's audio identical to what ``Codec.encode`` makes of the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtok import audio as A
from voxtok.tokenizers.batching import (
    UtteranceDataset,
    collate,
    load_record,
    make_batches,
    probe_durations,
    read_segment,
)
from voxtok.tokenizers.manifest import Record


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 50.0), max_size=60), st.floats(0.5, 40.0))
def test_batches_cover_every_item_once_within_the_budget(durations: list[float], budget: float) -> None:
    batches = make_batches(durations, budget)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(durations)))
    for b in batches:
        longest = max(max(durations[i] for i in b), 1e-3)
        assert len(b) == 1 or len(b) * longest <= budget + 1e-9
    # Longest first, so an out-of-memory batch shows up at the start of a run, not hours in.
    firsts = [max(durations[i] for i in b) for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    with pytest.raises(ValueError, match="batch_seconds"):
        make_batches(durations, 0)


def test_segments_read_only_their_samples(tmp_path: Path) -> None:
    sr = 16000
    x = (0.1 * torch.randn(2, sr * 2)).clamp(-1, 1)
    f = tmp_path / "a.flac"
    A.write(f, x, sr)
    full, _ = A.read(f)
    seg, sr2 = read_segment(f, 0.25, 1.5)
    assert sr2 == sr and torch.equal(seg, full[:, 4000:24000])
    assert torch.equal(read_segment(f, 1.0, None)[0], full[:, 16000:])
    assert torch.equal(read_segment(f, None, 2.03)[0], full)  # a rounded end just past the file is clamped
    with pytest.raises(A.AudioError, match="past the end"):
        read_segment(f, 0.0, 2.5)
    with pytest.raises(A.AudioError, match="at or past the end"):
        read_segment(f, 2.0, None)
    nan = tmp_path / "nan.wav"
    y = np.zeros((sr, 1), np.float32)
    y[9000] = np.nan
    sf.write(nan, y, sr, subtype="FLOAT")
    assert read_segment(nan, 0.0, 0.5)[0].shape == (1, 8000)  # the NaN lies outside this segment
    with pytest.raises(A.AudioError, match="non-finite"):
        read_segment(nan, 0.5, 0.75)
    with pytest.raises(A.AudioError, match="no such file"):
        read_segment(tmp_path / "missing.wav", 0.0, 1.0)


def test_worker_audio_is_what_codec_encode_would_make(tmp_path: Path) -> None:
    sr = 44100
    x = (0.2 * torch.randn(2, 5000)).clamp(-1, 1)
    f = tmp_path / "st.wav"
    A.write(f, x, sr)
    got = load_record(Record("st", str(f)), 24000)
    read, _ = A.read(f)
    # Codec._prepare: mix to mono (mean of channels), then voxtok.audio.resample.
    want = A.resample(A.to_mono(read[None]), sr, 24000)[0, 0]
    assert got.shape == (A.resampled_length(5000, sr, 24000),) and torch.equal(got, want)


def test_failures_come_back_as_items_not_exceptions(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    A.write(good, 0.1 * torch.ones(1, 800), 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEnot audio at all")
    recs = [Record("good", str(good)), Record("bad", str(tmp_path / "bad.wav")),
            Record("gone", str(tmp_path / "gone.wav"))]
    assert probe_durations(recs) == [0.05, 0.0, 0.0]
    ds = UtteranceDataset(recs, 16000)
    batch = collate([ds[i] for i in range(3)])
    assert batch["indices"] == [0] and batch["audio"].shape == (1, 1, 800)
    assert [i for i, _ in batch["errors"]] == [1, 2]
    assert "no such file" in batch["errors"][1][1]
    empty = collate([ds[1]])
    assert empty["audio"] is None and empty["indices"] == []
