"""The demo's data: espeak-ng utterances for training and validation, and the real recordings shipped in ``data/``.

Three sets, with no speaker in two of them:

- training: espeak-ng and flite utterances over ``TRAIN_VOICES`` (each voice at two speeds and pitches), written at
  run time (``voxtok.training.synth``), plus the real clips of ``data/train/`` when the package ships any;
- validation (for choosing settings; never the evaluation set): espeak-ng utterances over ``VALIDATION_VOICES``,
  which no training speaker uses, LJSpeech clips (one reader, not in the training set), and the same LJSpeech clips
  under a pink-noise floor at 10 ... 45 dB SNR (``ljspeech-noisy/``): real recordings have noise floors where
  espeak-ng has digital silence, and a validation set without any cannot reward a codec that copes with them;
- evaluation (for measuring only): LibriSpeech, AMI and JFK recordings, four unseen speakers.

Sources and licences of every shipped file: ``data/README.md``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import voxtok.audio as A
from voxtok.training.synth import FLITE_VOICES, VOICES, flite_available, synthesize_corpus

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_RATE = 16000

# espeak-ng's twelve voices and flite's four: flite's carry the spectral envelopes of recorded speakers (the
# study in docs/demo.md: a tie on validation, chosen for that reason; the evaluation recordings also favoured it).
TRAIN_VOICES: tuple[str, ...] = VOICES + tuple(FLITE_VOICES)
# build_corpus's defaults: two speakers (speed / pitch pairs) per training voice, twelve sentences each.
TRAIN_SPEAKERS = 2 * len(TRAIN_VOICES)
UTTERANCES_PER_SPEAKER = 12
# Voice and variant pairs that TRAIN_VOICES does not use: unseen "speakers" for validation.
VALIDATION_VOICES: tuple[str, ...] = ("en-us-nyc+m2", "en-gb-x-rp+f2", "en-029+m3", "en-gb-scotland+f4")

_MANIFEST = "corpus.json"
# Signal-to-noise ratios of the noisy validation copies, one per clip in turn (dB).
NOISY_SNR_DB: tuple[float, ...] = (10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0)


def _files(folder: str) -> list[Path]:
    root = DATA / folder
    return sorted(root.glob("*.flac")) if root.is_dir() else []


def training_files() -> list[Path]:
    """Real recordings shipped for training (16 kHz mono FLAC); may be empty."""
    return _files("train")


def validation_files() -> list[Path]:
    """Real recordings shipped for validation: LJSpeech clips no training set uses (16 kHz mono FLAC)."""
    return _files("validation")


def evaluation_files() -> list[Path]:
    """Real recordings of speakers in no other set, for measuring only (16 kHz mono FLAC)."""
    return _files("eval")


@dataclass(frozen=True)
class DemoCorpus:
    """Where ``build_corpus`` wrote each set: folders of 16 kHz mono FLAC files, and the files themselves."""

    root: Path
    train: list[Path]
    validation: list[Path]
    evaluation: list[Path]

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "eval"


def _copy(files: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        shutil.copyfile(f, folder / f.name)
        out.append(folder / f.name)
    return out


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise ``[num_samples]``: white noise shaped by 1 / sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    spectrum /= np.sqrt(np.maximum(f, 1.0))
    noise = np.fft.irfft(spectrum, n=num_samples)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _noisy_copies(files: list[Path], folder: Path, seed: int) -> list[Path]:
    """Each clip plus pink noise at ``NOISY_SNR_DB`` in turn (SNR against the clip's RMS), as 16 kHz FLAC."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, f in enumerate(files):
        audio, sr = A.read(f)
        x = audio.numpy().astype(np.float64).mean(axis=0)
        snr = NOISY_SNR_DB[i % len(NOISY_SNR_DB)]
        noise = pink_noise(x.shape[0], rng) * np.sqrt(np.mean(x**2)) * 10 ** (-snr / 20)
        y = x + noise
        y /= max(1.0, float(np.abs(y).max()) / 0.99)  # never clip
        path = folder / f"{f.stem}-snr{snr:g}.flac"
        A.write(path, y[None].astype(np.float32), sr)
        out.append(path)
    return out


def _reuse(root: Path, settings: dict) -> DemoCorpus | None:
    manifest = root / _MANIFEST
    if not manifest.is_file():
        return None
    try:
        saved = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return None
    if saved.get("settings") != settings:
        return None
    sets = {k: [root / p for p in saved.get(k, [])] for k in ("train", "validation", "evaluation")}
    if not all(sets.values()) or not all(p.is_file() for files in sets.values() for p in files):
        return None
    return DemoCorpus(root, **sets)


def build_corpus(
    root: str | Path,
    train_speakers: int = TRAIN_SPEAKERS,
    utterances_per_speaker: int = UTTERANCES_PER_SPEAKER,
    validation_utterances: int = 2,
    seed: int = 0,
    voices: Sequence[str] | None = None,
) -> DemoCorpus:
    """Write the demo's three sets under ``root`` and return where they are.

    ``root/train`` holds ``train_speakers * utterances_per_speaker`` espeak-ng utterances in LibriSpeech's layout
    (speakers cycle through ``voices``, each with its own speed and pitch) plus the shipped training clips;
    ``root/validation`` holds ``validation_utterances`` utterances per ``VALIDATION_VOICES`` voice plus the shipped
    LJSpeech validation clips, clean and under pink noise (``NOISY_SNR_DB``); ``root/eval`` the shipped evaluation
    recordings. A second call with the same settings finds ``root/corpus.json`` and reuses the files instead of
    writing them again. ``voices`` (default ``TRAIN_VOICES``) are the training voices: espeak-ng names or
    ``flite:NAME`` (``voxtok.training.synth.speak``).
    """
    root = Path(root)
    # The shipped files are part of the settings: a package with other recordings writes the corpus again.
    shipped = {k: [p.name for p in f()] for k, f in (("train", training_files), ("validation", validation_files),
                                                     ("evaluation", evaluation_files))}  # fmt: skip
    voices = tuple(voices or TRAIN_VOICES)
    # Speakers cycle through the voices, so the first train_speakers of them are the ones used.
    if any(v.startswith("flite:") for v in voices[:train_speakers]) and not flite_available():
        raise RuntimeError("the demo corpus uses flite voices and flite is not installed: "
                           "`sudo apt-get install -y flite` (`make demo` sets it up)")
    settings = {"train_speakers": train_speakers, "voices": list(voices),
                "utterances_per_speaker": utterances_per_speaker, "validation_utterances": validation_utterances,
                "seed": seed, "shipped": shipped, "noisy_snr_db": list(NOISY_SNR_DB)}  # fmt: skip
    found = _reuse(root, settings)
    if found is not None:
        return found
    for name in ("train", "validation", "eval"):
        shutil.rmtree(root / name, ignore_errors=True)
    train = [u.path for u in synthesize_corpus(
        root / "train", ("espeak",), train_speakers, utterances_per_speaker, SAMPLE_RATE, seed, voices
    )]  # fmt: skip
    train += _copy(training_files(), root / "train" / "real")
    validation = [u.path for u in synthesize_corpus(
        root / "validation", ("espeak",), len(VALIDATION_VOICES), validation_utterances, SAMPLE_RATE, seed + 1,
        VALIDATION_VOICES,
    )]  # fmt: skip
    validation += _copy(validation_files(), root / "validation" / "ljspeech")
    validation += _noisy_copies(validation_files(), root / "validation" / "ljspeech-noisy", seed + 2)
    evaluation = _copy(evaluation_files(), root / "eval")
    rel = {k: [str(p.relative_to(root)) for p in v]
           for k, v in (("train", train), ("validation", validation), ("evaluation", evaluation))}  # fmt: skip
    (root / _MANIFEST).write_text(json.dumps({"settings": settings, **rel}, indent=1) + "\n")
    return DemoCorpus(root, train, validation, evaluation)
