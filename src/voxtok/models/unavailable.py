"""``UnavailableEncoder``: the encoder slot of a codec converted decode-only.

Some published codecs are used for decoding far more than for encoding (a speech LLM generates the codes; the
codec turns them into audio), and their encoder may use parts voxtok does not have. A decode-only conversion
keeps the quantizer and decoder and puts this placeholder in the encoder's place: it carries the frame facts
(``dimension``, ``hop_length``) the codec checks, holds no weights, and refuses to run with a message that says
what is missing and what to do instead.
"""

from __future__ import annotations

from torch import Tensor

from voxtok.models.base import Encoder

__all__ = ["UnavailableEncoder"]


class UnavailableEncoder(Encoder):
    """An encoder that is not available: ``forward`` raises ``ValueError(reason)``.

    Args:
        dimension: latent width ``D`` the quantizer expects.
        hop_length: samples per frame (the decoder's hop).
        reason: why the encoder is missing and how to get codes instead (shown to the user).
        channels: audio channels the original encoder took.
    """

    def __init__(self, dimension: int, hop_length: int, reason: str, channels: int = 1) -> None:
        super().__init__()
        if dimension < 1 or hop_length < 1:
            raise ValueError(f"dimension and hop_length must be >= 1; got {dimension} and {hop_length}")
        self.dimension, self.hop_length, self.channels = int(dimension), int(hop_length), int(channels)
        self.reason = str(reason)

    def output_length(self, input_length: int) -> int:
        return -(-int(input_length) // self.hop_length)

    def forward(self, audio: Tensor) -> Tensor:
        raise ValueError(f"this codec has no encoder: {self.reason}")
