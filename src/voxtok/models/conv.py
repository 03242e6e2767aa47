"""Convolution layers with explicit padding, optional weight norm and stateful streaming.

Every SEANet layer goes through these wrappers, so padding is decided in one place:

- ``causal=False`` ("same"): ``k_eff - stride`` samples of padding split as evenly as possible, the odd one on
  the left (EnCodec / Mimi / DAC agree on this split for the lengths they use).
- ``causal=True``: all ``k_eff - stride`` samples on the left, so output ``t`` never sees input after ``t``.

A strided ``Conv1d`` also pads a few samples on the right so that the last, partial stride still yields a frame:
``output_length(L) == ceil(L / stride)`` for every ``L >= 1`` (the EnCodec "extra padding" rule). A
``ConvTranspose1d`` trims ``kernel - stride`` samples (all on the right when causal) so that
``output_length(L) == L * stride``.

Causal layers stream: inside ``with module.streaming(batch_size):`` each call takes any number of new samples
(even zero), emits every output that is now complete, and buffers the rest; concatenated outputs equal the
offline output. Streaming ``reflect`` padding is refused because reflecting the left edge reads samples that
have not arrived yet (EnCodec's causal 24 kHz model pads this way, so its first samples peek ahead).

Memory layout. The logical shape is always ``[B, C, T]``, but on the CPU a SEANet stack runs *time-major*: the
same tensor laid out as ``[B, T, C]`` in memory (``time_major(x)``). ``Conv1d`` and ``ConvTranspose1d`` keep
whichever layout they are given; the arithmetic, and the choice of kernel for each layout, is
``voxtok.kernels.conv``'s. Elementwise layers keep the layout by themselves. Results do not depend on the layout
beyond float rounding.

Weight norm uses ``torch.nn.utils.parametrizations.weight_norm`` (parameters ``parametrizations.weight.original0``
= g and ``original1`` = v). ``remove_weight_norm(module)`` folds it into plain weights for inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from voxtok.kernels.conv import (
    PAD_MODES,
    conv1d,
    conv_transpose1d,
    is_dense,
    is_time_major,
    pad1d,
    padded_conv1d,
    time_major,
)
from voxtok.models.base import StreamingModule, StreamingState

__all__ = [
    "LSTM",
    "Conv1d",
    "ConvTranspose1d",
    "Snake1d",
    "activation",
    "apply_activation",
    "is_time_major",
    "remove_weight_norm",
    "time_major",
]

NORMS = ("weight_norm", "none")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


@dataclass
class ConvState(StreamingState):
    """A streaming ``Conv1d``'s input that the next frame still needs (None before the first sample)."""

    buffer: Tensor | None = None


@dataclass
class OverlapState(StreamingState):
    """A streaming ``ConvTranspose1d``'s last ``kernel - stride`` partial output samples (without bias)."""

    partial: Tensor | None = None


@dataclass
class LSTMState(StreamingState):
    """A streaming ``LSTM``'s hidden and cell states (None before the first frame)."""

    hc: tuple[Tensor, Tensor] | None = None


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrisation under ``module`` into a plain ``weight`` (in place).

    The forward result is unchanged; each call no longer recomputes ``g * v / ||v||``. Use it for inference;
    training code keeps the parametrisation. Returns ``module``.
    """
    # Even when called under inference_mode, the folded weight must stay an ordinary tensor usable in training.
    with torch.inference_mode(False):
        for m in module.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


class Conv1d(StreamingModule):
    """``nn.Conv1d`` with explicit causal / "same" padding, optional weight norm and streaming.

    Input ``[B, C_in, L]`` -> output ``[B, C_out, ceil(L / stride)]``.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as ``nn.Conv1d``.
        causal: pad on the left only (see the module docstring).
        pad_mode: ``"constant"`` (zeros), ``"reflect"`` or ``"replicate"``.
        norm: ``"weight_norm"`` or ``"none"``.

    The wrapped layer is ``self.conv`` (names line up with EnCodec / Mimi checkpoints: ``conv.weight`` or
    ``conv.parametrizations.weight.original0/1``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        pad_mode: str = "constant",
        norm: str = "none",
    ) -> None:
        super().__init__()
        _check_choice("pad_mode", pad_mode, PAD_MODES)
        _check_choice("norm", norm, NORMS)
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError(f"kernel_size, stride, dilation must be >= 1; got {kernel_size}, {stride}, {dilation}")
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias)
        self.conv = _weight_norm(conv) if norm == "weight_norm" else conv
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.causal = causal
        self.pad_mode = pad_mode
        self.norm = norm
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        # A kernel shorter than the stride skips samples; the total pad is then 0, not negative.
        self.padding_total = max(self.effective_kernel - stride, 0)
        if causal:
            self.padding_left, self.padding_right = self.padding_total, 0
        else:
            self.padding_right = self.padding_total // 2
            self.padding_left = self.padding_total - self.padding_right

    def extra_repr(self) -> str:
        return f"causal={self.causal}, pad_mode={self.pad_mode!r}, norm={self.norm!r}"

    def output_length(self, input_length: int) -> int:
        """Frames for ``input_length`` samples offline: ``ceil(L / stride)``."""
        return -(-int(input_length) // self.stride)

    def _extra_padding(self, length: int) -> int:
        # Right padding that completes the last stride: the frame count becomes ceil(L / stride).
        frames = -(-length // self.stride)
        ideal = (frames - 1) * self.stride + self.effective_kernel - self.padding_total
        return max(ideal - length, 0)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, L]`` -> ``[B, C_out, ceil(L / stride)]`` offline; complete frames only when streaming."""
        if self.streaming_state is not None:
            return self._step(x)
        c = self.conv
        right = self.padding_right + self._extra_padding(x.shape[-1])
        return padded_conv1d(x, c.weight, c.bias, self.stride, c.dilation[0], c.groups, self.padding_left, right,
                             self.pad_mode)  # fmt: skip

    # -- streaming ---------------------------------------------------------------------------------------

    def init_streaming_state(self, batch_size: int) -> ConvState:
        if not self.causal:
            raise ValueError("a non-causal Conv1d cannot stream (its output needs future samples); use causal=True")
        if self.pad_mode == "reflect" and self.padding_total > 0:
            raise ValueError(
                "a causal Conv1d with pad_mode='reflect' cannot stream: reflecting the left edge reads samples "
                "that have not arrived yet; use pad_mode='constant' or 'replicate'"
            )
        return ConvState()

    def _step(self, x: Tensor) -> Tensor:
        state = self.streaming_state
        assert isinstance(state, ConvState)
        buffer = state.buffer
        if buffer is None:
            if x.shape[-1] == 0:  # nothing seen yet: 'replicate' needs a first sample to copy
                return x.new_zeros(x.shape[0], self.out_channels, 0)
            x = pad1d(x, self.padding_total, 0, self.pad_mode)
        elif buffer.shape[-1]:
            x = torch.cat([buffer, x], dim=-1)
        k, s = self.effective_kernel, self.stride
        frames = (x.shape[-1] - k) // s + 1 if x.shape[-1] >= k else 0
        # Keep whatever the next frame still needs: the input from the next frame's start onwards.
        state.buffer = x[..., frames * s :]
        if frames == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        c = self.conv
        return conv1d(x[..., : (frames - 1) * s + k], c.weight, c.bias, s, 0, c.dilation[0], c.groups)


class ConvTranspose1d(StreamingModule):
    """``nn.ConvTranspose1d`` that trims its padding so that ``[B, C_in, T]`` -> ``[B, C_out, T * stride]``.

    Args:
        in_channels, out_channels, kernel_size, stride, groups, bias: as ``nn.ConvTranspose1d``.
        causal: trim ``ceil((kernel - stride) * trim_right_ratio)`` on the right, the rest on the left;
            otherwise trim ``(kernel - stride) // 2`` on the right and the rest on the left.
        trim_right_ratio: causal only (EnCodec's option); 1.0 keeps the layer strictly causal.
        norm: ``"weight_norm"`` or ``"none"``.

    Streaming (causal, ``trim_right_ratio == 1``) is overlap-add: each call emits ``T * stride`` samples and
    keeps the last ``kernel - stride`` partial samples (without bias) to add to the next call's output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        trim_right_ratio: float = 1.0,
        norm: str = "none",
    ) -> None:
        super().__init__()
        _check_choice("norm", norm, NORMS)
        if kernel_size < stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be >= stride ({stride}) for a gap-free output")
        if not causal and trim_right_ratio != 1.0:
            raise ValueError(f"trim_right_ratio != 1 only makes sense for causal layers; got {trim_right_ratio}")
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ValueError(f"trim_right_ratio must be in [0, 1]; got {trim_right_ratio}")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.conv = _weight_norm(conv) if norm == "weight_norm" else conv
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.causal = causal
        self.norm = norm
        self.trim_right_ratio = trim_right_ratio
        total = kernel_size - stride
        self.padding_right = math.ceil(total * trim_right_ratio) if causal else total // 2
        self.padding_left = total - self.padding_right

    def extra_repr(self) -> str:
        return f"causal={self.causal}, norm={self.norm!r}"

    def output_length(self, input_length: int) -> int:
        """Samples for ``input_length`` frames: ``T * stride``."""
        return int(input_length) * self.stride

    def _full(self, x: Tensor, bias: bool = True) -> Tensor:
        c = self.conv
        return conv_transpose1d(x, c.weight, c.bias if bias else None, self.stride, c.groups)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, T]`` -> ``[B, C_out, T * stride]``."""
        if self.streaming_state is not None:
            return self._step(x)
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        y = self._full(x)
        return y[..., self.padding_left : y.shape[-1] - self.padding_right]

    def init_streaming_state(self, batch_size: int) -> OverlapState:
        if not self.causal or self.padding_left:
            raise ValueError(
                "only a causal ConvTranspose1d with trim_right_ratio=1 can stream "
                f"(causal={self.causal}, trim_right_ratio={self.trim_right_ratio})"
            )
        return OverlapState()

    def _step(self, x: Tensor) -> Tensor:
        state = self.streaming_state
        assert isinstance(state, OverlapState)
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        # Without bias, so that overlapping tails add up to exactly what one offline call computes.
        y = self._full(x, bias=False)
        partial = state.partial
        if partial is not None and partial.shape[-1]:
            y[..., : partial.shape[-1]] += partial
        n = x.shape[-1] * self.stride
        state.partial = y[..., n:]
        out = y[..., :n]
        bias = self.conv.bias
        return out + bias[:, None] if bias is not None else out


class Snake1d(nn.Module):
    """Snake activation ``x + sin(alpha x)^2 / alpha`` with a learned per-channel ``alpha`` ``[1, C, 1]``.

    From Ziyin et al. 2020 (https://arxiv.org/abs/2006.08195), as DAC uses it; the 1e-9 keeps ``alpha = 0`` finite.
    Without autograd it runs in one temporary and four passes over memory (the formula as written takes five
    temporaries); ``inplace=True`` then also writes the result over ``x``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        """``[B, C, T]`` -> ``[B, C, T]``."""
        alpha = self.alpha
        inv = (alpha + 1e-9).reciprocal()
        if torch.is_grad_enabled():
            return torch.addcmul(x, inv, torch.sin(alpha * x).square())
        s = torch.mul(x, alpha).sin_().square_()
        if inplace:
            return x.addcmul_(s, inv)
        return torch.addcmul(x, s, inv, out=s)


def activation(name: str, channels: int) -> nn.Module:
    """``"elu"`` -> ``nn.ELU()`` (no parameters), ``"snake"`` -> ``Snake1d(channels)`` (per-channel alpha)."""
    if name == "elu":
        return nn.ELU()
    if name == "snake":
        return Snake1d(channels)
    raise ValueError(f"activation must be 'elu' or 'snake'; got {name!r}")


def apply_activation(act: nn.Module, x: Tensor, inplace: bool) -> Tensor:
    """``act(x)``, overwriting ``x`` when ``inplace`` and autograd is off (inference saves a large temporary).

    Callers pass ``inplace=True`` only for tensors nobody else reads afterwards. An ``x`` with gaps (a trimmed
    convolution output of a batch) is not overwritten: the fresh, dense result spares the next convolution a copy.
    """
    if not inplace or torch.is_grad_enabled() or not is_dense(x):
        return act(x)
    if isinstance(act, nn.ELU):
        return F.elu(x, act.alpha, inplace=True)
    if isinstance(act, Snake1d):
        return act(x, inplace=True)
    return act(x)


class LSTM(StreamingModule):
    """A (stacked) LSTM over the time axis of ``[B, D, T]`` with a skip connection, as in SEANet.

    Unidirectional: ``y = lstm(x) + x``, width D. Bidirectional (SpeechTokenizer / DM-Codec encoders): the
    output is ``[B, 2D, T]`` and the skip adds ``x`` to both directions. The wrapped layer is ``self.lstm``.
    Streaming (unidirectional only) carries the hidden and cell states between calls.
    """

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True, bidirectional: bool = False) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dimension, dimension, num_layers, bidirectional=bidirectional)
        self.skip = skip
        self.bidirectional = bidirectional
        self.dimension = dimension
        self.out_channels = dimension * (2 if bidirectional else 1)

    def output_length(self, input_length: int) -> int:
        return int(input_length)

    def init_streaming_state(self, batch_size: int) -> LSTMState:
        if self.bidirectional:
            raise ValueError("a bidirectional LSTM cannot stream (its backward pass needs the whole signal)")
        return LSTMState()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, D, T]`` -> ``[B, D, T]`` (``[B, 2D, T]`` when bidirectional)."""
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        seq = x.permute(2, 0, 1)  # [T, B, D]: nn.LSTM's native layout
        state = self.streaming_state
        if state is not None:
            assert isinstance(state, LSTMState)
            y, state.hc = self.lstm(seq, state.hc)
        else:
            y, _ = self.lstm(seq)
        if self.skip:
            y = y + (seq.repeat(1, 1, 2) if self.bidirectional else seq)
        if is_time_major(x):  # keep the caller's layout: [B, T, D] in memory
            return y.transpose(0, 1).contiguous().permute(0, 2, 1)
        return y.permute(1, 2, 0)
