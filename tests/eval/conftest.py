"""Fixtures for the evaluation tests: a small espeak-ng corpus and stand-in systems with known behaviour."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from voxtok import audio as A
from voxtok.eval.baselines import EvalModel, Reconstruction
from voxtok.training.synth import synthesize_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three espeak-ng utterances (about 2 s each, 16 kHz FLAC) in LibriSpeech's layout, with a trans.txt."""
    root = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(root, speakers_per_subset=1, utterances_per_speaker=3, sample_rate=16000)
    return root


class Noisy(EvalModel):
    """The input at 16 kHz plus white noise at ``snr_db`` below the utterance's power (``None``: no noise, an
    identity "codec"). Deterministic: the noise is seeded."""

    def __init__(self, snr_db: float | None, name: str | None = None) -> None:
        super().__init__(name=name or ("identity" if snr_db is None else f"noise {snr_db:g} dB"), sample_rate=16000)
        self.snr_db = snr_db

    def reconstruct(self, audio: torch.Tensor, sample_rate: int) -> Reconstruction:
        x = A.resample(audio.float(), sample_rate, self.sample_rate)
        if self.snr_db is not None:
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1234))
            x = x + noise * x.pow(2).mean().sqrt() / 10 ** (self.snr_db / 20)
        return Reconstruction(audio=x, codes=None)


class FailsOn(Noisy):
    """An identity system whose codec raises on the utterance with ``samples`` input samples."""

    def __init__(self, samples: int) -> None:
        super().__init__(None, name="fails once")
        self.samples = samples

    def reconstruct(self, audio: torch.Tensor, sample_rate: int) -> Reconstruction:
        if audio.shape[-1] == self.samples:
            raise RuntimeError("decoder exploded")
        return super().reconstruct(audio, sample_rate)


@pytest.fixture
def systems() -> SimpleNamespace:
    """The stand-in systems: ``systems.Noisy(snr_db)`` and ``systems.FailsOn(samples)``."""
    return SimpleNamespace(Noisy=Noisy, FailsOn=FailsOn)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files voxtok assembles (the whisper-base model directory) go under the test's temporary folders, never ~.
    monkeypatch.setenv("VOXTOK_CACHE", str(tmp_path_factory.getbasetemp() / "voxtok-cache"))
