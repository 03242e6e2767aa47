"""voxtok: neural audio codecs and speech tokenizers.

Parts (quantizers, encoders, decoders, discriminators), codecs built from them, training, fused kernels for
nearest-code search, and corpus token extraction. See README.md and docs/design.md.
"""

from __future__ import annotations

from pathlib import Path

from voxtok._version import __version__
from voxtok.audio import AudioError
from voxtok.codecs.codec import Codec
from voxtok.types import CodecOutput, QuantizerOutput, Tokens


def load(name_or_path: str | Path) -> Codec:
    """A codec from a preset name (random weights, logged) or a ``save_pretrained`` directory."""
    return Codec.from_pretrained(name_or_path)


def __getattr__(name: str):
    # AudioTokenizer is imported on first use, so `import voxtok` never imports the tokenizers package (whose
    # extraction side pulls in pyarrow and friends).
    if name == "AudioTokenizer":
        from voxtok.tokenizers.audio_tokenizer import AudioTokenizer

        return AudioTokenizer
    raise AttributeError(f"module 'voxtok' has no attribute {name!r}")


__all__ = ["AudioError", "AudioTokenizer", "Codec", "CodecOutput", "QuantizerOutput", "Tokens", "__version__",
           "load"]
