"""Result types shared across voxtok: one dataclass per result, every field's shape documented."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class QuantizerOutput:
    """What every quantizer's ``forward`` returns, so codecs never special-case the quantizer.

    Attributes:
        z_q: ``[B, D, T]`` quantized latents (straight-through, or rotation trick, in training).
        codes: ``[B, Q, T]`` int64 code indices, one row per codebook.
        loss: scalar, commitment + codebook (+ any balancing penalty), averaged over valid frames.
        metrics: per-codebook diagnostics such as ``perplexity`` ``[Q]``, ``usage`` ``[Q]`` (fraction of the
            codebook used in the batch) and ``dead_codes`` ``[Q]`` (codes whose EMA count is under threshold).
    """

    z_q: Tensor
    codes: Tensor
    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Tokens:
    """Codes of a batch with the facts needed to decode them back to audio of the right length.

    Attributes:
        codes: ``[B, Q, T]`` int64.
        lengths: ``[B]`` valid frames per item.
        audio_lengths: ``[B]`` samples per item at the codec's ``sample_rate`` (what ``decode`` restores).
        frame_rate: frames per second.
        sample_rate: the codec's sample rate (input at another rate was resampled to it).
    """

    codes: Tensor
    lengths: Tensor
    audio_lengths: Tensor
    frame_rate: float
    sample_rate: int

    def __post_init__(self) -> None:
        if self.codes.dim() != 3:
            raise ValueError(f"Tokens.codes must be [B, Q, T]; got shape {tuple(self.codes.shape)}")
        if self.codes.dtype != torch.int64:
            raise ValueError(f"Tokens.codes must be int64; got {self.codes.dtype}")
        b = self.codes.shape[0]
        for name in ("lengths", "audio_lengths"):
            value = getattr(self, name)
            if value.shape != (b,):
                raise ValueError(f"Tokens.{name} must be [B] = [{b}]; got shape {tuple(value.shape)}")

    @property
    def num_codebooks(self) -> int:
        return int(self.codes.shape[1])

    def to(self, device: torch.device | str) -> Tokens:
        """The same tokens with every tensor on ``device``."""
        return Tokens(
            codes=self.codes.to(device),
            lengths=self.lengths.to(device),
            audio_lengths=self.audio_lengths.to(device),
            frame_rate=self.frame_rate,
            sample_rate=self.sample_rate,
        )


@dataclass
class CodecOutput:
    """What ``Codec.forward`` returns in training.

    Attributes:
        audio: ``[B, 1, S]`` reconstruction, same length as the input.
        quantizer: the quantizer's output (``z_q``, ``codes``, ``loss``, ``metrics``).
        latents: ``[B, D, T]`` continuous encoder output before quantization.
        mask: ``[B, T]`` True for valid frames (padding excluded), or None when the batch is unpadded.
    """

    audio: Tensor
    quantizer: QuantizerOutput
    latents: Tensor
    mask: Tensor | None = None
