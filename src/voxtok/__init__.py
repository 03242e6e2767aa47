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

__all__ = ["AudioError", "Codec", "CodecOutput", "QuantizerOutput", "Tokens", "__version__", "load"]
