"""Composite parts: a stack of stages run one after another, and the frame-rate changes between them.

Mimi's encoder, for example, is SEANet (24 kHz -> 25 Hz) -> causal Transformer -> a strided conv (25 -> 12.5 Hz);
its decoder mirrors that. ``EncoderChain`` / ``DecoderChain`` compose such stages into one ``Encoder`` /
``Decoder`` with the combined ``hop_length`` and ``output_length``, so a codec never knows the stack's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from voxtok.models.base import Decoder, Encoder, Stage
from voxtok.models.conv import Conv1d, ConvTranspose1d


def _width(stage: nn.Module, side: str) -> int | None:
    names = ("input_dim", "dimension", "in_channels") if side == "in" else ("output_dim", "dimension", "out_channels")
    for name in names:
        value = getattr(stage, name, None)
        if isinstance(value, int):
            return value
    return None


def _check_widths(stages: Sequence[nn.Module]) -> None:
    for a, b in zip(stages[:-1], stages[1:], strict=True):
        out_a, in_b = _width(a, "out"), _width(b, "in")
        if out_a is not None and in_b is not None and out_a != in_b:
            raise ValueError(f"stage widths must fit: {type(a).__name__} gives {out_a} channels, "
                             f"{type(b).__name__} takes {in_b}")


class _Chain:
    """What both chains share: stages in order, the combined hop and the composed lengths."""

    stages: nn.ModuleList

    def _set_stages(self, stages: Sequence[nn.Module], kind: str) -> None:
        if not stages:
            raise ValueError(f"a {kind} needs at least one stage")
        _check_widths(stages)
        self.stages = nn.ModuleList(stages)
        self.hop_length = math.prod(int(getattr(s, "hop_length", 1)) for s in stages)

    def output_length(self, input_length: int) -> int:
        n = input_length
        for s in self.stages:
            n = s.output_length(n)
        return n

    def forward(self, x: Tensor) -> Tensor:
        for s in self.stages:
            x = s(x)
        return x


class EncoderChain(_Chain, Encoder):
    """Stages applied in order: audio ``[B, C, S]`` -> latents ``[B, D, T]``, ``hop = prod(stage hops)``.

    Args:
        stages: the first takes audio (an ``Encoder``), the rest take and give latents; each exposes
            ``hop_length`` (1 when absent) and ``output_length``.
    """

    def __init__(self, stages: Sequence[nn.Module]) -> None:
        super().__init__()
        self._set_stages(stages, "EncoderChain")
        self.channels = int(getattr(stages[0], "channels", 1))
        self.dimension = int(_width(stages[-1], "out"))


class DecoderChain(_Chain, Decoder):
    """Stages applied in order: latents ``[B, D, T]`` -> audio ``[B, C, T * hop]``; the last gives audio."""

    def __init__(self, stages: Sequence[nn.Module]) -> None:
        super().__init__()
        self._set_stages(stages, "DecoderChain")
        self.channels = int(getattr(stages[-1], "channels", 1))
        self.dimension = int(_width(stages[0], "in"))


class FrameDownsample(Stage):
    """Lower the frame rate by ``stride``: ``[B, D, T]`` -> ``[B, D, ceil(T / stride)]``.

    A strided conv with kernel ``2 * stride`` and no bias, as Mimi's 25 -> 12.5 Hz step (replicate padding,
    so the edge frames are not pulled towards zero).
    """

    def __init__(self, dimension: int, stride: int = 2, causal: bool = True) -> None:
        super().__init__()
        self.dimension, self.hop_length = dimension, stride
        self.conv = Conv1d(dimension, dimension, 2 * stride, stride=stride, bias=False, causal=causal,
                           pad_mode="replicate")

    def output_length(self, input_length: int) -> int:
        return self.conv.output_length(input_length)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FrameUpsample(Stage):
    """Raise the frame rate by ``stride``: ``[B, D, T]`` -> ``[B, D, T * stride]``.

    A depthwise transposed conv with kernel ``2 * stride`` and no bias, as Mimi's 12.5 -> 25 Hz step.
    """

    def __init__(self, dimension: int, stride: int = 2, causal: bool = True) -> None:
        super().__init__()
        self.dimension, self.hop_length = dimension, stride
        self.conv = ConvTranspose1d(dimension, dimension, 2 * stride, stride=stride, groups=dimension, bias=False,
                                    causal=causal)

    def output_length(self, input_length: int) -> int:
        return self.conv.output_length(input_length)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)
