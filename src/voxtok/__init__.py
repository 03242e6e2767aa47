"""voxtok: neural audio codecs and speech tokenizers.

Parts (quantizers, encoders, decoders, discriminators), codecs built from them, training, fused kernels for
nearest-code search, and corpus token extraction. See README.md and docs/design.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from voxtok.audio import AudioError
from voxtok.types import CodecOutput, QuantizerOutput, Tokens

__all__ = ["AudioError", "CodecOutput", "QuantizerOutput", "Tokens", "__version__"]
