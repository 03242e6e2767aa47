"""Synthetic speech corpora with espeak-ng (and flite), for tests, benchmarks and the demo.

``synthesize_corpus`` writes utterances in LibriSpeech's layout
(``SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac`` with ``SPEAKER-CHAPTER.trans.txt``), one "speaker" per
voice, speed and pitch, so that data modules, extraction and evaluation run on the real layout without a
download. The sentences are the Harvard sentences (IEEE 1969, public domain).

Voices are espeak-ng voice names (``en-us+m1``) or ``flite:NAME`` for flite's voices (``FLITE_VOICES``: its
statistical-parametric voices built from the CMU ARCTIC recordings, and a diphone voice). espeak-ng is a formant
synthesiser; flite's voices carry the spectral envelopes of real speakers, so a corpus with both is less far from
recorded speech than espeak-ng alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import voxtok.audio as A

HARVARD_SENTENCES = (
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "Large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.", "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.", "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.", "What joy there is in living.",
    "A king ruled the state in the early days.", "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.", "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.", "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.", "Hop over the fence and plunge in.",
    "The friendly gang left the drug store.", "Mesh wire keeps chicks inside.",
)

# espeak-ng voices and variants with clearly different timbres (male and female variants of several accents).
VOICES = (
    "en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f3", "en-gb-scotland+m2", "en-029+f4", "en-gb-x-rp+m4",
    "en-us+f5", "en-gb-x-gbclan+m6", "en-us+m7", "en-gb+f1", "en-gb-x-gbcwmd+m5",
)

# flite voices (``flite -lv``) and their mean pitch in Hz, which ``speak``'s ``pitch`` scales: kal16 is a diphone
# voice, awb (Scottish male), rms (US male) and slt (US female) are clustergen voices. rms ignores flite's pitch
# setting (None): its utterances keep the voice's own.
FLITE_VOICES: dict[str, float | None] = {"flite:kal16": 105.0, "flite:awb": 110.0, "flite:rms": None,
                                         "flite:slt": 175.0}  # fmt: skip


@dataclass(frozen=True)
class Utterance:
    """One synthesised utterance: where it was written, its text and its LibriSpeech-style id."""

    path: Path
    text: str
    id: str


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def flite_available() -> bool:
    return shutil.which("flite") is not None


def speak(text: str, path: str | Path, voice: str = "en-us", speed: int = 175, pitch: int = 50) -> Path:
    """Speak ``text`` into the WAV file ``path`` (mono, 16-bit) with espeak-ng (22.05 kHz) or, for a
    ``flite:NAME`` voice, flite (16 kHz).

    ``speed`` is in words per minute (175: espeak-ng's default rate), ``pitch`` 0-99 (50: the voice's own); flite
    takes them as a duration stretch and a mean pitch of 0.7-1.3 times the voice's (``FLITE_VOICES``).
    """
    if voice.startswith("flite:"):
        return _flite(text, Path(path), voice, speed, pitch)
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: `sudo apt-get install -y espeak-ng` (make sets it up)")
    cmd = [exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    return Path(path)


def _flite(text: str, path: Path, voice: str, speed: int, pitch: int) -> Path:
    if voice not in FLITE_VOICES:
        raise ValueError(f"unknown flite voice {voice!r}; known: {', '.join(FLITE_VOICES)}")
    exe = shutil.which("flite")
    if exe is None:
        raise RuntimeError("flite is not installed: `sudo apt-get install -y flite` (make sets it up)")
    cmd = [exe, "-voice", voice.split(":", 1)[1], "--setf", f"duration_stretch={175.0 / max(speed, 1):.3f}"]
    mean = FLITE_VOICES[voice]
    if mean is not None:
        cmd += ["--setf", f"int_f0_target_mean={mean * (0.7 + 0.6 * min(max(pitch, 0), 99) / 99):.1f}"]
    cmd += ["-t", text, "-o", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def synthesize_corpus(
    root: str | Path,
    subsets: Sequence[str] = ("train-clean-100",),
    speakers_per_subset: int = 4,
    utterances_per_speaker: int = 5,
    sample_rate: int = 16000,
    seed: int = 0,
    voices: Sequence[str] = VOICES,
    extension: str = "flac",
) -> list[Utterance]:
    """Write a LibriSpeech-layout corpus under ``root`` and return its utterances in writing order.

    Each speaker is one voice with its own speed (140-200 words per minute) and pitch (30-70), drawn from
    ``seed``; speakers of different subsets get different ids, and voices cycle through ``voices``.
    Utterances take sentences in turn, so neighbouring items differ in text.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: list[Utterance] = []
    sentence = int(rng.integers(len(HARVARD_SENTENCES)))
    speaker_index = 0
    with tempfile.TemporaryDirectory() as tmp:
        for subset in subsets:
            for _ in range(speakers_per_subset):
                voice = voices[speaker_index % len(voices)]
                speed, pitch = int(rng.integers(140, 201)), int(rng.integers(30, 71))
                spk, chapter = 100 + speaker_index, 1000 + speaker_index
                speaker_index += 1
                folder = root / subset / str(spk) / str(chapter)
                folder.mkdir(parents=True, exist_ok=True)
                lines = []
                for u in range(utterances_per_speaker):
                    text = HARVARD_SENTENCES[sentence % len(HARVARD_SENTENCES)]
                    sentence += 1
                    uid = f"{spk}-{chapter}-{u:04d}"
                    wav = speak(text, Path(tmp) / f"{uid}.wav", voice, speed, pitch)
                    x, sr = A.read(wav)
                    path = folder / f"{uid}.{extension}"
                    A.write(path, A.resample(x, sr, sample_rate), sample_rate)
                    # LibriSpeech transcripts are upper case without punctuation.
                    words = "".join(ch for ch in text.upper() if ch.isalpha() or ch in " '").split()
                    lines.append(f"{uid} {' '.join(words)}")
                    out.append(Utterance(path, text, uid))
                (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return out
