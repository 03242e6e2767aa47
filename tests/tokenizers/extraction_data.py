"""Shared by the extraction tests: a small espeak-ng corpus, a saved causal tiny codec, per-file reference codes.

Utterances are cut to 0.25-0.6 s: the tiny presets run at 2000 frames/s, so short clips keep the tests fast while
still giving batches of unequal lengths (the padding is what batch == single has to survive).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import voxtok
from voxtok import audio as A
from voxtok.training.synth import synthesize_corpus

PRESET = "mimi-12.5hz-tiny"  # causal: batched codes must equal codes of each file alone, exactly
SRC = Path(__file__).resolve().parents[2] / "src"


def make_corpus(root: Path, speakers: int = 2, per_speaker: int = 4, seed: int = 0) -> list[Path]:
    """A LibriSpeech-layout corpus of short clips (16 kHz flac), plus one stereo 44.1 kHz WAV; sorted paths."""
    utts = synthesize_corpus(root, speakers_per_subset=speakers, utterances_per_speaker=per_speaker, seed=seed)
    rng = np.random.default_rng(seed)
    for u in utts:
        x, sr = A.read(u.path)
        A.write(u.path, x[:, : int(sr * rng.uniform(0.25, 0.6))], sr)
    # Multichannel at another rate: extraction mixes and resamples it as Codec.encode would.
    x, sr = A.read(utts[0].path)
    stereo = A.resample(torch.cat([x, 0.5 * x.flip(-1)]), sr, 44100)
    A.write(root / "stereo.wav", stereo, 44100)
    return sorted([u.path for u in utts] + [root / "stereo.wav"])


def save_codec(path: Path, corpus: Path, seed: int = 0) -> Path:
    """The causal tiny preset with codebooks initialised by k-means on ``corpus``, saved to ``path``.

    With random codebooks every frame maps to the same code, and a test comparing codes could not fail; after one
    training-mode pass (k-means init) codes vary from frame to frame and a 1e-6 change of the input flips some.
    """
    torch.manual_seed(seed)
    codec = voxtok.load(PRESET)
    clips = [A.read(p) for p in sorted(corpus.rglob("*.flac"))]
    clips = [A.resample(x, sr, codec.sample_rate) for x, sr in clips]
    n = min(x.shape[-1] for x in clips)
    codec.train()
    with torch.no_grad():
        codec(torch.stack([x[:, :n] for x in clips]))
    return codec.eval().save_pretrained(path)


def reference(codec: voxtok.Codec, path: Path, start: float | None = None, end: float | None = None,
              n_q: int | None = None) -> np.ndarray:
    """Codes ``[Q, T]`` of one file (or segment) encoded alone with ``Codec.encode``."""
    x, sr = A.read(path)
    if start is not None or end is not None:
        x = x[:, round((start or 0.0) * sr): None if end is None else round(end * sr)]
    tokens = codec.encode(x[None], sample_rate=sr, n_q=n_q)
    return tokens.codes[0, :, : int(tokens.lengths[0])].numpy().astype(np.int32)


def assert_codes_match(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Same shape; the first codebook equal in all but 2% of the frames, every codebook in all but 10%.

    A file in a padded batch is computed at another length than alone, and float rounding then differs by ~1e-7
    (docs/extraction.md, "Exactness"), which flips the rare frame whose latent sits on a boundary between codes,
    mostly in the deeper codebooks. Reading the wrong samples (one sample off, another file, a wrong segment)
    changes most frames of every codebook.
    """
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    first, every = int((got[0] != want[0]).sum()), int((got != want).any(0).sum())
    t = want.shape[1]
    assert first <= 0.02 * t and every <= 0.1 * t, f"{what}: of {t} frames {first} differ in the first codebook, " \
        f"{every} in some codebook"


def cli(*args: str | os.PathLike, **popen) -> subprocess.Popen:
    """``python -m voxtok.cli ARGS`` in a child process with this checkout's sources first on the path."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "voxtok.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
