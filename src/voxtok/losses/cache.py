"""Teacher features precomputed for a corpus and kept on disk, so training need not run the teacher every step.

Layout: ``root/<teacher>/meta.json`` says which teacher, layer and sample rate produced the features, and
``root/<teacher>/<utterance id>.safetensors`` holds one utterance's ``features`` ``[T', H]`` (float32, or float16
when asked), with the same three facts in the file's metadata. Opening a cache, and reading each file, checks them
against what the caller expects and raises ``ValueError`` on any mismatch, so features from another layer or rate
never reach a loss unnoticed. Everything is read with safetensors and JSON; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from voxtok.audio import promote, resample

__all__ = ["TeacherFeatureCache"]

FORMAT_VERSION = 1


def _slug(text: str) -> str:
    # Percent-encoding keeps ids like "speaker/chapter/utt" or "org/model" unique and flat on disk.
    return quote(text, safe="-_.") or "_"


class TeacherFeatureCache:
    """Per-utterance teacher features on disk, keyed by utterance id and teacher name.

    Args:
        root: the cache folder (one subfolder per teacher).
        teacher: the teacher's name (``SSLDistillation.name``).
        layer: the layer choice as a string (``SSLDistillation.layer_key``: ``"-1"``, ``"3,4"``, ``"average"``).
        sample_rate: the rate the teacher ran at (``SSLDistillation.teacher_sample_rate``).
        dtype: storage type for new entries (``torch.float16`` halves the disk use); reads return float32.

    Raises:
        ValueError: the folder holds features from another layer or sample rate (or another format).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        teacher: str,
        layer: str,
        sample_rate: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not teacher:
            raise ValueError("teacher name must be non-empty")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16; got {dtype}")
        self.meta = {
            "teacher": str(teacher),
            "layer": str(layer),
            "sample_rate": str(int(sample_rate)),
            "format": str(FORMAT_VERSION),
        }
        self.dtype = dtype
        self.path = Path(root) / _slug(teacher)
        meta_file = self.path / "meta.json"
        if meta_file.is_file():
            self._validate(json.loads(meta_file.read_text()), str(meta_file))
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            meta_file.write_text(json.dumps(self.meta, indent=2) + "\n")

    @classmethod
    def for_teacher(
        cls, root: str | os.PathLike, distillation: object, dtype: torch.dtype = torch.float32
    ) -> TeacherFeatureCache:
        """The cache matching an ``SSLDistillation``'s teacher name, layer and sample rate."""
        return cls(
            root,
            teacher=distillation.name,  # type: ignore[attr-defined]
            layer=distillation.layer_key,  # type: ignore[attr-defined]
            sample_rate=distillation.teacher_sample_rate,  # type: ignore[attr-defined]
            dtype=dtype,
        )

    def _validate(self, found: dict[str, str], where: str) -> None:
        for key, expected in self.meta.items():
            got = str(found.get(key))
            if got != expected:
                raise ValueError(
                    f"{where}: teacher-feature cache has {key}={got!r} but {expected!r} was expected; recompute the "
                    "cache for this teacher setting or point to another folder"
                )

    def _file(self, utt_id: str) -> Path:
        if not utt_id:
            raise ValueError("utterance id must be non-empty")
        return self.path / f"{_slug(utt_id)}.safetensors"

    def __contains__(self, utt_id: str) -> bool:
        return self._file(utt_id).is_file()

    def put(self, utt_id: str, features: Tensor) -> None:
        """Store ``features`` ``[T', H]`` for ``utt_id`` (replacing any earlier entry)."""
        if features.dim() != 2:
            raise ValueError(f"features must be [T', H]; got shape {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise ValueError(f"features of {utt_id!r} hold NaN or Inf")
        path = self._file(utt_id)
        tmp = path.with_suffix(".tmp")
        save_file(
            {"features": features.detach().to("cpu", self.dtype).contiguous()},
            str(tmp),
            metadata={**self.meta, "utterance": utt_id},
        )
        tmp.replace(path)  # atomic: a crash mid-write never leaves a half file under the real name

    def get(self, utt_id: str) -> Tensor:
        """Features ``[T', H]`` float32 for ``utt_id``; ``KeyError`` when absent, ``ValueError`` when mismatched."""
        path = self._file(utt_id)
        if not path.is_file():
            raise KeyError(f"no cached features for utterance {utt_id!r} in {self.path}")
        with safe_open(str(path), framework="pt") as f:
            self._validate(f.metadata() or {}, str(path))
            return f.get_tensor("features").float()

    def batch(self, utt_ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(features [B, T'max, H] zero-padded, lengths [B])``, ready for ``SSLDistillation(teacher_features=)``."""
        items = [self.get(u) for u in utt_ids]
        if not items:
            raise ValueError("utt_ids is empty")
        widths = {x.shape[1] for x in items}
        if len(widths) != 1:
            raise ValueError(f"cached features differ in width {sorted(widths)}; the cache mixes teachers")
        lengths = torch.tensor([x.shape[0] for x in items], dtype=torch.long)
        out = torch.zeros(len(items), int(lengths.max()), items[0].shape[1])
        for i, x in enumerate(items):
            out[i, : x.shape[0]] = x
        return out, lengths

    def precompute(
        self,
        distillation: object,
        items: Iterable[tuple[str, Tensor, int]],
        overwrite: bool = False,
    ) -> int:
        """Run ``distillation.teacher_features`` on each ``(utt_id, audio [C, S] or [S], sample_rate)``.

        Audio goes through ``voxtok.audio.resample`` to the codec rate first, exactly as in training, so cached and
        on-the-fly features agree. Entries already present are kept unless ``overwrite``. Returns how many were
        computed.
        """
        given = {
            "teacher": distillation.name,  # type: ignore[attr-defined]
            "layer": distillation.layer_key,  # type: ignore[attr-defined]
            "sample_rate": int(distillation.teacher_sample_rate),  # type: ignore[attr-defined]
            "format": FORMAT_VERSION,
        }
        self._validate({k: str(v) for k, v in given.items()}, "the distillation passed to precompute")
        done = 0
        for utt_id, audio, sr in items:
            if utt_id in self and not overwrite:
                continue
            x = promote(audio if audio.dim() != 2 else audio[None])  # [1, C, S]
            x = resample(x, int(sr), distillation.sample_rate)  # type: ignore[attr-defined]
            feats, lengths = distillation.teacher_features(x)  # type: ignore[attr-defined]
            self.put(utt_id, feats[0, : int(lengths[0])])
            done += 1
        return done
