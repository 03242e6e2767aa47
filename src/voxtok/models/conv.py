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
same tensor laid out as ``[B, T, C]`` in memory (``time_major(x)``; channels innermost). oneDNN's convolutions
run two to four times faster on that layout than on the channel-major one for the long, narrow signals near the
waveform (e.g. 64 -> 32 channels at 24 kHz): it computes in it directly, where the channel-major layout costs a
reorder to and from its blocked format, each a fresh, page-faulting temporary. A transposed convolution also
avoids a col2im pass. ``Conv1d`` and
``ConvTranspose1d`` keep whichever layout they are given (time-major goes through ``conv2d`` on a
``channels_last`` view of ``[B, C, 1, T]``); elementwise layers keep it by themselves. Results do not depend on
the layout beyond float rounding.

Weight norm uses ``torch.nn.utils.parametrizations.weight_norm`` (parameters ``parametrizations.weight.original0``
= g and ``original1`` = v). ``remove_weight_norm(module)`` folds it into plain weights for inference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from voxtok.models.base import StreamingModule

__all__ = [
    "LSTM",
    "Conv1d",
    "ConvTranspose1d",
    "Snake1d",
    "activation",
    "apply_activation",
    "remove_weight_norm",
    "time_major",
]

PAD_MODES = ("constant", "reflect", "replicate")
# Layout-dependent kernel choices (time-major inputs only), measured on a 2-core AVX-512 CPU; module constants so
# that tests can force each path.
GEMM_WEIGHTS_PER_FRAME = 4096  # see _weight_bound
EDGE_RECOMPUTE_MIN_ELEMS = 1 << 18  # input elements from which reflect / replicate edges are recomputed
NORMS = ("weight_norm", "none")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def time_major(x: Tensor) -> Tensor:
    """``x`` ``[B, C, T]`` with the same values, laid out as ``[B, T, C]`` in memory (strides ``(T*C, 1, C)``).

    The layout voxtok's convolutions run fastest in on the CPU (see the module docstring). A one-channel signal
    is the same memory either way; it only gets the strides that mark it time-major (no copy).
    """
    if x.dim() != 3:
        raise ValueError(f"expected [B, C, T]; got shape {tuple(x.shape)}")
    if is_time_major(x):
        return x
    b, c, t = x.shape
    if c == 1:
        return x.contiguous().as_strided((b, 1, t), (t, 1, 1))
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def is_time_major(x: Tensor) -> bool:
    """Whether ``[B, C, T]`` ``x`` is stored time-major: channels innermost, each batch item's frames dense.

    A single frame (``T <= 1``) is the same memory in either layout and counts as time-major.
    """
    return x.dim() == 3 and (x.shape[2] <= 1 or (x.stride(1) == 1 and x.stride(2) == x.shape[1]))


def _dense(x: Tensor) -> bool:
    # Non-overlapping and gap-free in either layout: safe to overwrite in place and to hand to oneDNN as it is.
    if x.is_contiguous():
        return True
    b, c, t = x.shape
    return is_time_major(x) and (b == 1 or x.stride(0) == c * t)


def _channels_last(x: Tensor) -> Tensor:
    """Time-major ``[B, C, T]`` -> ``[B, C, 1, T]`` whose strides mark it ``channels_last`` (a view when dense).

    ``unsqueeze`` alone is not enough: oneDNN picks its layout from the strides of every axis, the batch axis of
    a single item included, and would otherwise copy the input to the channel-major layout and back.
    """
    b, c, t = x.shape
    if b == 1 or x.stride(0) == c * t:
        return x.as_strided((b, c, 1, t), (c * t, 1, c * t, c))
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def _weight_bound(weight_numel: int, frames: int) -> bool:
    """Whether a convolution has so few frames for its weight (>= 4096 weight elements per frame) that oneDNN's
    per-call weight reordering outweighs the arithmetic, and one plain matmul wins. Measured on a 2-core AVX-512
    CPU: 512 -> 1024 channels, kernel 16 (8.4 M weights) on 50 frames ran 5x faster, on 250 frames 1.3x; at
    ~1000 weights per frame oneDNN was 10-25% faster."""
    return weight_numel >= GEMM_WEIGHTS_PER_FRAME * max(frames, 1)


def _pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """``F.pad`` on the time axis; ``reflect`` on an input shorter than the pad first appends zeros (as EnCodec).

    A time-major ``x`` stays time-major: the pad runs on its ``[B, 1, T, C]`` view, along the ``T`` axis.
    """
    if left == 0 and right == 0:
        return x
    tm = x.dim() == 3 and is_time_major(x)
    v = x.transpose(1, 2).unsqueeze(1) if tm else x  # [B, 1, T, C]: pad the second-last axis

    def pad(t: Tensor, lr: tuple[int, int], how: str) -> Tensor:
        return F.pad(t, (0, 0, *lr) if tm else lr, mode=how)

    if mode != "reflect":
        y = pad(v, (left, right), mode)
    else:
        length = x.shape[-1]
        extra = max(left, right) - length + 1 if length <= max(left, right) else 0
        if extra:
            v = pad(v, (0, extra), "constant")
        y = pad(v, (left, right), "reflect")
        if extra:
            y = y[..., : y.shape[-2] - extra, :] if tm else y[..., : y.shape[-1] - extra]
    return y.squeeze(1).transpose(1, 2) if tm else y


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

    def _conv(self, x: Tensor, padding: int = 0, weight: Tensor | None = None) -> Tensor:
        # ``weight``: the caller's copy of ``conv.weight`` when it convolves several times in one call (a
        # weight-norm parametrisation recomputes the weight at every access).
        c = self.conv
        w = c.weight if weight is None else weight
        if not is_time_major(x):
            return F.conv1d(x, w, c.bias, c.stride, padding, c.dilation, c.groups)
        frames = (x.shape[-1] + 2 * padding - self.effective_kernel) // self.stride + 1
        if c.groups == 1 and (self.in_channels == 1 or _weight_bound(w.numel(), frames)):
            return self._conv_gemm(x, padding, w)
        y = F.conv2d(
            _channels_last(x), w.unsqueeze(2), c.bias, (1, c.stride[0]), (0, padding), (1, c.dilation[0]),
            c.groups,
        )  # fmt: skip
        return y.squeeze(2)

    def _conv_gemm(self, x: Tensor, padding: int, weight: Tensor) -> Tensor:
        """Time-major convolution as one matmul over windows gathered from ``[B, T, C]`` memory.

        Faster than oneDNN on this layout, measured on a 2-core AVX-512 CPU, for a single input channel (2x) and
        for layers with a large weight and few frames (``_weight_bound``: up to 5x at 512 -> 1024 channels, kernel
        16, 50 frames), where oneDNN's reordering of the weight at every call dominates.
        """
        c = self.conv
        k, s, d = c.kernel_size[0], c.stride[0], c.dilation[0]
        if padding:
            x = _pad1d(x, padding, padding, "constant")
        b, ch, t = x.shape
        t_out = (t - self.effective_kernel) // s + 1
        xt = x.transpose(1, 2)
        xt = xt if xt.is_contiguous() else xt.contiguous()
        cols = xt.as_strided((b, t_out, ch, k), (t * ch, s * ch, 1, d * ch))  # [b, i, c, j] = x[b, c, i*s + j*d]
        y = F.linear(cols.reshape(b, t_out, ch * k), weight.reshape(self.out_channels, ch * k), c.bias)
        return y.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, L]`` -> ``[B, C_out, ceil(L / stride)]`` offline; complete frames only when streaming."""
        if self.streaming_state is not None:
            return self._step(x)
        length = x.shape[-1]
        extra = self._extra_padding(length)
        left, right = self.padding_left, self.padding_right + extra
        k, s = self.effective_kernel, self.stride
        # Recomputing the edges costs two small convolutions (and, for a large weight, two weight reorders): worth
        # it only where the padded copy it saves is large.
        edges_apart = length >= 2 * (k + left + right) and x.shape[1] * length >= EDGE_RECOMPUTE_MIN_ELEMS
        if left < right or (self.pad_mode != "constant" and not edges_apart):
            return self._conv(_pad1d(x, left, right, self.pad_mode))
        # Zero padding inside the convolution is free: no padded copy of the input. It is symmetric, so a
        # causal (left-heavy) layer computes (left - right) / stride surplus frames at the end, dropped here.
        n = self.output_length(length)
        w = self.conv.weight
        y = self._conv(x, left, w)
        if y.shape[-1] != n:
            y = y[..., :n]
        if self.pad_mode == "constant":
            return y
        # Reflect / replicate: only the frames whose window reaches into the padding differ from the zero-padded
        # result. Recompute just those from short padded slices of each edge (a copy of the whole input, the
        # usual way, costs as much as a cheap convolution on long signals).
        # Each slice is longer than its pad (a reflection needs that), so it may yield a few more frames than
        # the edge needs.
        head = -(-left // s)  # frames starting inside the left padding
        if head:
            piece = _pad1d(x[..., : max((head - 1) * s + k - left, left + 1)], left, 0, self.pad_mode)
            y[..., :head] = self._conv(piece, 0, w)[..., :head]
        tail = -(-(length - k + 1 + left) // s)  # first frame whose window passes the last sample
        if right and tail < n:
            back = max(0, -(-(right + 1 - (length - tail * s + left)) // s))  # whole frames earlier, if too short
            piece = _pad1d(x[..., (tail - back) * s - left :], 0, right, self.pad_mode)
            y[..., tail:] = self._conv(piece, 0, w)[..., back:]
        return y

    # -- streaming ---------------------------------------------------------------------------------------

    def init_streaming_state(self, batch_size: int) -> dict[str, Any]:
        if not self.causal:
            raise ValueError("a non-causal Conv1d cannot stream (its output needs future samples); use causal=True")
        if self.pad_mode == "reflect" and self.padding_total > 0:
            raise ValueError(
                "a causal Conv1d with pad_mode='reflect' cannot stream: reflecting the left edge reads samples "
                "that have not arrived yet; use pad_mode='constant' or 'replicate'"
            )
        return {"buffer": None}

    def _step(self, x: Tensor) -> Tensor:
        state = self.streaming_state
        assert state is not None
        buffer = state["buffer"]
        if buffer is None:
            if x.shape[-1] == 0:  # nothing seen yet: 'replicate' needs a first sample to copy
                return x.new_zeros(x.shape[0], self.out_channels, 0)
            x = _pad1d(x, self.padding_total, 0, self.pad_mode)
        elif buffer.shape[-1]:
            x = torch.cat([buffer, x], dim=-1)
        k, s = self.effective_kernel, self.stride
        frames = (x.shape[-1] - k) // s + 1 if x.shape[-1] >= k else 0
        # Keep whatever the next frame still needs: the input from the next frame's start onwards.
        state["buffer"] = x[..., frames * s :]
        if frames == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        return self._conv(x[..., : (frames - 1) * s + k])


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
        b = c.bias if bias else None
        w = c.weight  # once: a weight-norm parametrisation recomputes it at every access
        if not is_time_major(x):
            return F.conv_transpose1d(x, w, b, c.stride, 0, 0, c.groups)
        s, k = c.stride[0], c.kernel_size[0]
        if c.groups == 1 and k % s == 0 and _weight_bound(w.numel(), x.shape[-1]):
            return self._full_gemm(x, w, b)
        y = F.conv_transpose2d(_channels_last(x), w.unsqueeze(2), b, (1, s), 0, 0, c.groups)
        return y.squeeze(2)

    def _full_gemm(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Time-major transposed convolution as one matmul and an overlap-add of its ``kernel / stride`` parts.

        For a large weight and few frames (``_weight_bound``; e.g. Mimi's and DAC's first upsampling), 1.2-4x
        faster than oneDNN on the same layout on a 2-core AVX-512 CPU, which reorders the weight at every call.
        """
        c = self.conv
        s, k = c.stride[0], c.kernel_size[0]
        m = k // s
        b, cin, t = x.shape
        cout = self.out_channels
        # z[b, i, o, q, j] = sum_c x[b, c, i] w[c, o, q*s + j]: input frame i's contribution to output i*s + q*s + j.
        z = torch.matmul(x.transpose(1, 2), weight.reshape(cin, cout * k)).view(b, t, cout, m, s)
        y = x.new_zeros(b, t + m - 1, s, cout)
        for q in range(m):
            y[:, q : q + t] += z[:, :, :, q, :].transpose(2, 3)
        if bias is not None:
            y += bias
        return y.view(b, (t + m - 1) * s, cout).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, T]`` -> ``[B, C_out, T * stride]``."""
        if self.streaming_state is not None:
            return self._step(x)
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        y = self._full(x)
        return y[..., self.padding_left : y.shape[-1] - self.padding_right]

    def init_streaming_state(self, batch_size: int) -> dict[str, Any]:
        if not self.causal or self.padding_left:
            raise ValueError(
                "only a causal ConvTranspose1d with trim_right_ratio=1 can stream "
                f"(causal={self.causal}, trim_right_ratio={self.trim_right_ratio})"
            )
        return {"partial": None}

    def _step(self, x: Tensor) -> Tensor:
        state = self.streaming_state
        assert state is not None
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        # Without bias, so that overlapping tails add up to exactly what one offline call computes.
        y = self._full(x, bias=False)
        partial = state["partial"]
        if partial is not None and partial.shape[-1]:
            y[..., : partial.shape[-1]] += partial
        n = x.shape[-1] * self.stride
        state["partial"] = y[..., n:]
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
    if not inplace or torch.is_grad_enabled() or not _dense(x):
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

    def init_streaming_state(self, batch_size: int) -> dict[str, Any]:
        if self.bidirectional:
            raise ValueError("a bidirectional LSTM cannot stream (its backward pass needs the whole signal)")
        return {"hc": None}

    def forward(self, x: Tensor) -> Tensor:
        """``[B, D, T]`` -> ``[B, D, T]`` (``[B, 2D, T]`` when bidirectional)."""
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        seq = x.permute(2, 0, 1)  # [T, B, D]: nn.LSTM's native layout
        if self.streaming_state is not None:
            y, hc = self.lstm(seq, self.streaming_state["hc"])
            self.streaming_state["hc"] = hc
        else:
            y, _ = self.lstm(seq)
        if self.skip:
            y = y + (seq.repeat(1, 1, 2) if self.bidirectional else seq)
        if is_time_major(x):  # keep the caller's layout: [B, T, D] in memory
            return y.transpose(0, 1).contiguous().permute(0, 2, 1)
        return y.permute(1, 2, 0)
