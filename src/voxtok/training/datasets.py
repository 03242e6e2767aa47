"""Training items: utterance lists (LibriSpeech layout, audio folders, manifests), crops decoded in the loader's
workers, and the batch layout every voxtok data module produces.

A batch is a dict:

- ``audio`` ``[B, 1, S]`` float32 in [-1, 1] at the codec's rate (mono), zero past each item's length;
- ``lengths`` ``[B]`` int64 valid samples per item (a crop shorter than the segment is padded, never dropped);
- ``offset`` / ``total`` ``[B]`` int64: where the crop starts in its utterance and the utterance's length, both in
  samples at the codec's rate (for slicing cached teacher features);
- ``id`` / ``text``: lists of utterance ids and transcripts (``None`` when unknown; for a crop, the words whose
  position falls inside it, see ``crop_text``);
- ``skipped``: paths of files that failed to decode while this batch was made (each replaced by the next
  utterance), so the training process can count and report them.

Randomness (crop position, gain) comes from a per-item seed chosen by the sampler, never from the worker's global
state, so the batches are the same whatever the number of workers and after a resume.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import Dataset

import voxtok.audio as A

log = logging.getLogger("voxtok.training")

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")


@dataclass(frozen=True)
class Utterance:
    """One training or validation item: a file, optionally a ``[start, end)`` window of it in seconds, its text."""

    path: str
    id: str
    text: str | None = None
    start: float = 0.0
    end: float | None = None


# ----------------------------------------------------------------------------------------------------------
# Utterance lists


def scan_librispeech(root: str | os.PathLike, subset: str, extension: str = "flac") -> list[Utterance]:
    """Utterances of one LibriSpeech subset (``ROOT/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac`` with
    ``SPEAKER-CHAPTER.trans.txt`` beside them), in sorted order, with their transcripts.

    Raises:
        ValueError: the subset folder is missing or holds no transcript file. An utterance listed in a transcript
            whose audio file is missing is left out with a warning.
    """
    folder = Path(root) / subset
    if not folder.is_dir():
        raise ValueError(
            f"LibriSpeech subset folder {folder} does not exist; expected ROOT/{subset}/SPEAKER/CHAPTER/*.{extension} "
            "(see recipes/librispeech/README.md for the download)"
        )
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise ValueError(f"{folder}: no SPEAKER/CHAPTER/*.trans.txt transcripts found; is this a LibriSpeech subset?")
    out: list[Utterance] = []
    missing: list[str] = []
    for trans in transcripts:
        for line in trans.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.strip().partition(" ")
            if not uid:
                continue
            path = trans.parent / f"{uid}.{extension}"
            if path.is_file():
                out.append(Utterance(str(path), uid, text.strip() or None))
            else:
                missing.append(str(path))
    if missing:
        log.warning("%s: %d utterance(s) listed in transcripts have no audio file, e.g. %s", folder, len(missing),
                    missing[0])
    if not out:
        raise ValueError(f"{folder}: the transcripts list no utterance with an audio file")
    return out


def scan_folder(folder: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Utterance]:
    """Every file under ``folder`` (recursive) whose extension is in ``extensions``, in sorted order.

    The id is the path relative to ``folder`` without its extension. A ``NAME.txt`` beside ``NAME.wav`` is taken as
    its transcript.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"audio folder {root} does not exist")
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not paths:
        raise ValueError(f"{root}: no audio files with extensions {sorted(exts)}")
    out = []
    for p in paths:
        txt = p.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8").strip() if txt.is_file() else None
        out.append(Utterance(str(p), str(p.relative_to(root).with_suffix("")), text or None))
    return out


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Rows of a JSONL, CSV or TSV manifest: ``path`` (relative paths are relative to the manifest's folder),
    optional ``id``, ``text``, ``start`` and ``end`` (seconds)."""
    manifest = Path(path)
    if not manifest.is_file():
        raise ValueError(f"manifest {manifest} does not exist")
    suffix = manifest.suffix.lower()
    rows: list[dict[str, Any]]
    if suffix in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(manifest.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{manifest}, line {i + 1}: not valid JSON ({e})") from e
    elif suffix in (".csv", ".tsv"):
        with manifest.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise ValueError(f"manifest {manifest}: expected a .jsonl, .csv or .tsv file; got {suffix!r}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("path"):
            raise ValueError(f"{manifest}, row {i + 1}: every row needs a 'path'; got {row!r}")
        p = Path(str(row["path"]))
        p = p if p.is_absolute() else manifest.parent / p
        start = float(row.get("start") or 0.0)
        end = row.get("end")
        end = float(end) if end not in (None, "") else None
        if end is not None and end <= start:
            raise ValueError(f"{manifest}, row {i + 1}: end ({end}) must be after start ({start})")
        text = row.get("text")
        out.append(Utterance(str(p), str(row.get("id") or p.with_suffix("").name), str(text) if text else None,
                             start, end))
    if not out:
        raise ValueError(f"manifest {manifest} has no rows")
    return out


def spread(items: Sequence[Utterance], count: int | None) -> list[Utterance]:
    """``count`` items evenly spaced over ``items`` (all of them when ``count`` is None or larger)."""
    if count is None or count >= len(items):
        return list(items)
    if count <= 0:
        raise ValueError(f"count must be positive or None; got {count}")
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


# ----------------------------------------------------------------------------------------------------------
# Decoding a crop


def read_window(path: str, start: float, end: float | None, sample_rate: int, num_samples: int | None,
                rng: np.random.Generator | None) -> tuple[Tensor, int, int]:  # fmt: skip
    """Decode (part of) an audio file, mix it to mono and resample it to ``sample_rate``.

    Only the samples needed are decoded: for a crop of ``num_samples`` (at ``sample_rate``), a random window of
    the file's ``[start, end)`` region when ``rng`` is given, else its beginning. ``num_samples`` None = the whole
    region.

    Returns:
        ``(audio [1, n] float32, offset, total)``: ``n <= num_samples``; ``offset`` and ``total`` are where the
        crop starts in the region and the region's length, in samples at ``sample_rate``.

    Raises:
        AudioError: missing, empty, unreadable, truncated or non-finite audio (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise A.AudioError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise A.AudioError(f"{p}: empty file (0 bytes)")
    try:
        with sf.SoundFile(str(p)) as f:
            sr, frames = int(f.samplerate), int(f.frames)
            lo = min(frames, int(round(start * sr)))
            hi = frames if end is None else min(frames, int(round(end * sr)))
            avail = hi - lo
            if avail <= 0:
                raise A.AudioError(f"{p}: no audio samples in [{start}, {end}) s ({frames} frames at {sr} Hz)")
            need = avail if num_samples is None else min(avail, math.ceil(num_samples * sr / sample_rate))
            first = lo
            if rng is not None and avail > need:
                first = lo + int(rng.integers(0, avail - need + 1))
            f.seek(first)
            data = f.read(need, dtype="float32", always_2d=True)
    except A.AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise A.AudioError(f"{p}: not readable as audio ({e})") from e
    if data.shape[0] < need:
        raise A.AudioError(f"{p}: truncated: expected {need} frames from frame {first}, decoded {data.shape[0]}")
    x = A.to_mono(torch.from_numpy(np.ascontiguousarray(data.T)))
    A.check_audio(x, name=str(p))
    if sr != sample_rate:
        x = A.resample(x, sr, sample_rate)
    if num_samples is not None:
        x = x[:, :num_samples]
    offset = A.resampled_length(first - lo, sr, sample_rate)
    total = A.resampled_length(avail, sr, sample_rate)
    return x.contiguous(), offset, total


def crop_text(text: str | None, offset: int, length: int, total: int) -> str | None:
    """The words of ``text`` heard in samples ``[offset, offset + length)`` of an utterance of ``total`` samples,
    assuming speech at an even rate of characters over the utterance (the same assumption as LM distillation's
    "spread" placement). At least the word nearest the crop's centre is kept."""
    if not text or length >= total:
        return text
    words = text.split()
    if not words:
        return text
    chars = np.cumsum([len(w) + 1 for w in words], dtype=np.float64)
    centres = (chars - (np.array([len(w) + 1 for w in words]) / 2)) / chars[-1]
    a, b = offset / total, (offset + length) / total
    keep = [w for w, c in zip(words, centres, strict=True) if a <= c < b]
    if not keep:
        keep = [words[int(np.abs(centres - (a + b) / 2).argmin())]]
    return " ".join(keep)


# ----------------------------------------------------------------------------------------------------------
# Dataset and collation


class CropDataset(Dataset):
    """Crops of utterances at the codec's rate.

    ``dataset[(index, seed)]`` (the keys ``EpochSampler`` yields) decodes a crop of utterance ``index`` whose
    position and gain come from ``seed``; ``dataset[index]`` takes the region's beginning. A file that fails to
    decode is replaced by the next utterance (its path is reported in the item's ``skipped`` list); when every
    utterance fails, ``AudioError`` names the first one.

    Args:
        items: the utterances.
        sample_rate: the codec's rate.
        num_samples: crop length in samples (None = whole regions, e.g. for validation with ``max_samples``).
        random_crop: take a random window (training) or the region's beginning (validation).
        gain_db: ``(low, high)`` random gain in dB, applied per crop (limited so the peak stays at 0.99).
        noise_db: ``(low, high)``: white noise at a random RMS level in dBFS added to each crop after the gain
            (synthetic speech has digital silence where real recordings have a noise floor), clipped to [-1, 1].
    """

    def __init__(self, items: Sequence[Utterance], sample_rate: int, num_samples: int | None,
                 random_crop: bool = True, gain_db: tuple[float, float] | None = None,
                 noise_db: tuple[float, float] | None = None) -> None:  # fmt: skip
        if not items:
            raise ValueError("no utterances to load")
        self.items = list(items)
        self.sample_rate = int(sample_rate)
        self.num_samples = num_samples
        self.random_crop = random_crop
        self.gain_db = tuple(gain_db) if gain_db is not None else None
        self.noise_db = tuple(noise_db) if noise_db is not None else None
        for name, span in (("gain_db", self.gain_db), ("noise_db", self.noise_db)):
            if span is not None and (len(span) != 2 or not span[0] <= span[1]):
                raise ValueError(f"{name} must be (low, high) with low <= high; got {span}")
        self._bad: set[int] = set()  # per worker: utterances known not to decode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (key, None) if isinstance(key, int) else key
        rng = np.random.default_rng(seed) if seed is not None else None
        skipped: list[str] = []
        first_error: Exception | None = None
        n = len(self.items)
        for step in range(n):
            i = (index + step) % n
            item = self.items[i]
            if i in self._bad:
                skipped.append(item.path)  # reported every time, so counts do not depend on the worker count
                continue
            try:
                x, offset, total = read_window(item.path, item.start, item.end, self.sample_rate, self.num_samples,
                                               rng if self.random_crop else None)
            except A.AudioError as e:
                self._bad.add(i)
                skipped.append(item.path)
                first_error = first_error or e
                log.warning("skipping %s: %s", item.path, e)
                continue
            if self.gain_db is not None and rng is not None:
                gain = 10 ** (rng.uniform(*self.gain_db) / 20)
                peak = float(x.abs().max())
                x = x * min(gain, 0.99 / peak if peak > 0 else gain)
            if self.noise_db is not None and rng is not None:
                level = 10 ** (rng.uniform(*self.noise_db) / 20)
                noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
                x = (x + level * noise).clamp(-1.0, 1.0)
            text = crop_text(item.text, offset, x.shape[-1], total)
            return {"audio": x, "id": item.id, "text": text, "offset": offset, "total": total, "skipped": skipped}
        raise A.AudioError(f"every one of the {n} utterances failed to decode; first: {first_error or skipped[0]}")


def collate(items: Iterable[dict[str, Any]], num_samples: int | None = None) -> dict[str, Any]:
    """Stack items into a batch (see the module docstring), zero-padding to ``num_samples`` or the longest."""
    items = list(items)
    lengths = torch.tensor([it["audio"].shape[-1] for it in items], dtype=torch.long)
    width = int(lengths.max()) if num_samples is None else max(int(num_samples), int(lengths.max()))
    audio = torch.zeros(len(items), 1, width)
    for b, it in enumerate(items):
        audio[b, :, : it["audio"].shape[-1]] = it["audio"]
    return {
        "audio": audio,
        "lengths": lengths,
        "offset": torch.tensor([it["offset"] for it in items], dtype=torch.long),
        "total": torch.tensor([it["total"] for it in items], dtype=torch.long),
        "id": [it["id"] for it in items],
        "text": [it["text"] for it in items],
        "skipped": [p for it in items for p in it["skipped"]],
    }
