"""Encoders, decoders and discriminators: SEANet convolution stacks, a causal Transformer (and CAT's patch
Transformers), the Vocos decoders with an iSTFT head, semantic encoders from transformers speech models, and the
MPD / MRD / MS-STFT / multi-band discriminators. Every part subclasses a seam in ``base.py`` and records its
constructor arguments; transformers models load through ``hf.py``. Nothing here imports ``voxtok.quantizers``.
"""

from __future__ import annotations

from voxtok.models.base import Decoder, Discriminator, Encoder, Stage, StreamingModule, StreamingState
from voxtok.models.bigcodec import BigCodecEncoder
from voxtok.models.chain import DecoderChain, EncoderChain, FrameDownsample, FrameUpsample
from voxtok.models.discriminators import (
    MultiBandDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from voxtok.models.seanet import SEANetDecoder, SEANetEncoder
from voxtok.models.semantic import ConcatEncoder, HFAudioEncoder
from voxtok.models.transformer import CATDecoder, CATEncoder, CausalTransformer
from voxtok.models.vocos import ISTFTHead, VocosDecoder, VocosTransformerDecoder
from voxtok.models.xcodec2 import XCodec2Encoder

__all__ = [
    "BigCodecEncoder",
    "CATDecoder",
    "CATEncoder",
    "CausalTransformer",
    "ConcatEncoder",
    "Decoder",
    "DecoderChain",
    "Discriminator",
    "Encoder",
    "EncoderChain",
    "FrameDownsample",
    "FrameUpsample",
    "HFAudioEncoder",
    "ISTFTHead",
    "MultiBandDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "SEANetDecoder",
    "SEANetEncoder",
    "Stage",
    "StreamingModule",
    "StreamingState",
    "VocosDecoder",
    "VocosTransformerDecoder",
    "XCodec2Encoder",
]
