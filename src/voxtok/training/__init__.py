"""Training: the Lightning ``CodecModule``, data modules for LibriSpeech and any audio folder, callbacks.

The names load lazily, so ``import voxtok.training`` (or ``voxtok.training.synth``) does not import Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AudioFolderDataModule", "CodecModule", "LibriSpeechDataModule"]


def __getattr__(name: str) -> Any:
    if name == "CodecModule":
        from voxtok.training.module import CodecModule

        return CodecModule
    if name in ("LibriSpeechDataModule", "AudioFolderDataModule"):
        from voxtok.training import data

        return getattr(data, name)
    raise AttributeError(f"module 'voxtok.training' has no attribute {name!r}")
