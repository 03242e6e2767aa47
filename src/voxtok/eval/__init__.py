"""Evaluation: reconstruction, intelligibility and quality metrics (PESQ, STOI, SI-SDR, DNSMOS, WER, speaker
similarity, bitrate and codebook use) and reports; ``voxtok eval`` (docs/eval.md).

``evaluate`` is imported lazily so that ``voxtok.eval.metrics`` (used by training validation) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from voxtok.eval.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'voxtok.eval' has no attribute {name!r}")
