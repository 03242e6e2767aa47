"""voxtok: neural audio codecs and speech tokenizers.

Parts (quantizers, encoders, decoders, discriminators), codecs built from them, training, fused kernels for
nearest-code search, and corpus token extraction. See README.md and docs/design.md.

This module is the package's public face only: code inside voxtok never imports it (docs/design.md, "Layers").
"""

from __future__ import annotations

from voxtok._version import __version__
from voxtok.audio import AudioError
from voxtok.codecs.codec import Codec
from voxtok.codecs.loading import load
from voxtok.types import CodecOutput, QuantizerOutput, Tokens


def __getattr__(name: str):
    # AudioTokenizer is imported on first use, so `import voxtok` never imports the tokenizers package (whose
    # extraction side pulls in pyarrow and friends).
    if name == "AudioTokenizer":
        from voxtok.tokenizers.audio_tokenizer import AudioTokenizer

        return AudioTokenizer
    raise AttributeError(f"module 'voxtok' has no attribute {name!r}")


__all__ = ["AudioError", "AudioTokenizer", "Codec", "CodecOutput", "QuantizerOutput", "Tokens", "__version__",
           "load"]
