"""1-D convolutions on either memory layout, with a per-call choice of kernel: the CPU-speed paths of voxtok's
convolution layers (``voxtok.models.conv`` decides padding amounts, weight norm and streaming; this module runs the
arithmetic).

Layout. A ``[B, C, T]`` tensor is either channel-major (contiguous) or *time-major*: the same values stored as
``[B, T, C]`` (``time_major(x)``; strides ``(T*C, 1, C)``). oneDNN computes directly in the time-major layout,
where the channel-major one costs a reorder to and from its blocked format, so voxtok's SEANet stacks run
time-major on the CPU. Every function here returns its result in the layout it was given.

Dispatch (``conv1d_path``, ``conv_transpose1d_path``, ``padding_path`` say which path a call takes):

- channel-major input: ``F.conv1d`` / ``F.conv_transpose1d`` (cuDNN on CUDA, oneDNN on the CPU);
- time-major, one input channel or a weight-bound layer (``weight elements >= GEMM_WEIGHTS_PER_FRAME * frames``,
  groups 1): one matmul over windows gathered from ``[B, T, C]`` memory (for a transposed convolution, one
  matmul and an overlap-add), since oneDNN reorders the weight at every call and that dominates when there are
  few frames per weight;
- time-major otherwise: ``conv2d`` / ``conv_transpose2d`` on a ``channels_last`` view of ``[B, C, 1, T]`` (no
  copy).

Padding (``padded_conv1d``): zero padding goes inside the convolution (no padded copy of the input); reflect /
replicate padding of inputs of at least ``EDGE_RECOMPUTE_MIN_ELEMS`` elements convolves with zero padding and
recomputes only the frames whose window reaches into the padding, from short padded slices of each edge. Every
path gives the result of ``F.pad`` then ``F.conv1d`` up to float rounding (tests/kernels/test_conv_dispatch.py). The
thresholds are module constants (tests force each path through them); the measurements behind them are in
docs/models.md ("Memory layout and kernel choice").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EDGE_RECOMPUTE_MIN_ELEMS",
    "GEMM_WEIGHTS_PER_FRAME",
    "PAD_MODES",
    "conv1d",
    "conv1d_path",
    "conv_transpose1d",
    "conv_transpose1d_path",
    "is_dense",
    "is_time_major",
    "pad1d",
    "padded_conv1d",
    "padding_path",
    "time_major",
]

PAD_MODES = ("constant", "reflect", "replicate")
GEMM_WEIGHTS_PER_FRAME = 4096  # weight elements per output frame from which one matmul beats oneDNN
EDGE_RECOMPUTE_MIN_ELEMS = 1 << 18  # input elements from which reflect / replicate edges are recomputed


def time_major(x: Tensor) -> Tensor:
    """``x`` ``[B, C, T]`` with the same values, laid out as ``[B, T, C]`` in memory (strides ``(T*C, 1, C)``).

    A one-channel signal is the same memory either way; it only gets the strides that mark it time-major (no copy).
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


def is_dense(x: Tensor) -> bool:
    """Non-overlapping and gap-free in either layout: safe to overwrite in place and to hand to oneDNN as it is."""
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
    return weight_numel >= GEMM_WEIGHTS_PER_FRAME * max(frames, 1)


def pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """``F.pad`` on the time axis of ``[B, C, T]``, keeping the layout; ``reflect`` on an input shorter than the
    pad first appends zeros (as EnCodec does), so no length is an error."""
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


# ------------------------------------------------------------------------------------------------------------
# Convolution


def _frames(length: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (length + 2 * padding - kernel) // stride + 1


def conv1d_path(x: Tensor, weight: Tensor, stride: int = 1, padding: int = 0, dilation: int = 1,
                groups: int = 1) -> str:  # fmt: skip
    """The kernel ``conv1d`` runs for these arguments: ``"conv1d"`` (channel-major input), ``"gemm"`` or
    ``"channels_last"`` (time-major input)."""
    if not is_time_major(x):
        return "conv1d"
    kernel = (weight.shape[-1] - 1) * dilation + 1
    frames = _frames(x.shape[-1], kernel, stride, padding)
    if groups == 1 and (weight.shape[1] == 1 or _weight_bound(weight.numel(), frames)):
        return "gemm"
    return "channels_last"


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, padding: int = 0,
           dilation: int = 1, groups: int = 1) -> Tensor:  # fmt: skip
    """``F.conv1d`` on ``x`` ``[B, C_in, T]`` in either layout (the output keeps it); ``padding`` zeros on both
    sides. ``weight`` is ``[C_out, C_in / groups, K]``."""
    path = conv1d_path(x, weight, stride, padding, dilation, groups)
    if path == "conv1d":
        return F.conv1d(x, weight, bias, stride, padding, dilation, groups)
    if path == "gemm":
        return _conv1d_gemm(x, weight, bias, stride, padding, dilation)
    y = F.conv2d(_channels_last(x), weight.unsqueeze(2), bias, (1, stride), (0, padding), (1, dilation), groups)
    return y.squeeze(2)


def _conv1d_gemm(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int,
                 dilation: int) -> Tensor:  # fmt: skip
    """Time-major convolution as one matmul over windows gathered from ``[B, T, C]`` memory."""
    c_out, ch, k = weight.shape
    if padding:
        x = pad1d(x, padding, padding, "constant")
    b, _, t = x.shape
    t_out = _frames(t, (k - 1) * dilation + 1, stride)
    xt = x.transpose(1, 2)
    xt = xt if xt.is_contiguous() else xt.contiguous()
    cols = xt.as_strided((b, t_out, ch, k), (t * ch, stride * ch, 1, dilation * ch))  # x[b, c, i*s + j*d]
    y = F.linear(cols.reshape(b, t_out, ch * k), weight.reshape(c_out, ch * k), bias)
    return y.transpose(1, 2)


def padding_path(length: int, channels: int, kernel: int, left: int, right: int, mode: str) -> str:
    """How ``padded_conv1d`` pads: ``"copy"`` (``pad1d``, then convolve), ``"inside"`` (zeros inside the
    convolution) or ``"edges"`` (zeros inside, then the edge frames recomputed for reflect / replicate)."""
    # Recomputing the edges costs two small convolutions (and, for a large weight, two weight reorders): worth it
    # only where the padded copy it saves is large.
    edges_apart = length >= 2 * (kernel + left + right) and channels * length >= EDGE_RECOMPUTE_MIN_ELEMS
    if left < right or (mode != "constant" and not edges_apart):
        return "copy"
    return "inside" if mode == "constant" else "edges"


def padded_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, dilation: int, groups: int,
                  left: int, right: int, mode: str) -> Tensor:  # fmt: skip
    """``conv1d(pad1d(x, left, right, mode), ...)`` without the padded copy where that pays: ``[B, C_in, L]`` ->
    ``[B, C_out, (L + left + right - k) // stride + 1]`` (``k`` the dilated kernel), in ``x``'s layout."""
    length = x.shape[-1]
    k, s = (weight.shape[-1] - 1) * dilation + 1, stride
    path = padding_path(length, x.shape[1], k, left, right, mode)
    if path == "copy":
        return conv1d(pad1d(x, left, right, mode), weight, bias, s, 0, dilation, groups)
    # Zero padding inside the convolution is symmetric, so a left-heavy pad computes (left - right) / stride
    # surplus frames at the end, dropped here.
    n = _frames(length + left + right, k, s)
    y = conv1d(x, weight, bias, s, left, dilation, groups)
    if y.shape[-1] != n:
        y = y[..., :n]
    if path == "inside":
        return y
    # Reflect / replicate: only the frames whose window reaches into the padding differ from the zero-padded
    # result; recompute just those. Each slice is longer than its pad (a reflection needs that), so it may yield a
    # few more frames than the edge needs.
    head = -(-left // s)  # frames starting inside the left padding
    if head:
        piece = pad1d(x[..., : max((head - 1) * s + k - left, left + 1)], left, 0, mode)
        y[..., :head] = conv1d(piece, weight, bias, s, 0, dilation, groups)[..., :head]
    tail = -(-(length - k + 1 + left) // s)  # first frame whose window passes the last sample
    if right and tail < n:
        back = max(0, -(-(right + 1 - (length - tail * s + left)) // s))  # whole frames earlier, if too short
        piece = pad1d(x[..., (tail - back) * s - left :], 0, right, mode)
        y[..., tail:] = conv1d(piece, weight, bias, s, 0, dilation, groups)[..., back:]
    return y


# ------------------------------------------------------------------------------------------------------------
# Transposed convolution


def conv_transpose1d_path(x: Tensor, weight: Tensor, stride: int = 1, groups: int = 1) -> str:
    """The kernel ``conv_transpose1d`` runs: ``"conv_transpose1d"`` (channel-major input), ``"gemm"`` or
    ``"channels_last"`` (time-major input)."""
    if not is_time_major(x):
        return "conv_transpose1d"
    if groups == 1 and weight.shape[-1] % stride == 0 and _weight_bound(weight.numel(), x.shape[-1]):
        return "gemm"
    return "channels_last"


def conv_transpose1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1,
                     groups: int = 1) -> Tensor:  # fmt: skip
    """``F.conv_transpose1d`` without padding on ``x`` ``[B, C_in, T]`` in either layout: the full output
    ``[B, C_out, (T - 1) * stride + K]``. ``weight`` is ``[C_in, C_out / groups, K]``."""
    path = conv_transpose1d_path(x, weight, stride, groups)
    if path == "conv_transpose1d":
        return F.conv_transpose1d(x, weight, bias, stride, 0, 0, groups)
    if path == "gemm":
        return _conv_transpose1d_gemm(x, weight, bias, stride)
    y = F.conv_transpose2d(_channels_last(x), weight.unsqueeze(2), bias, (1, stride), 0, 0, groups)
    return y.squeeze(2)


def _conv_transpose1d_gemm(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    """Time-major transposed convolution as one matmul and an overlap-add of its ``kernel / stride`` parts."""
    s, (cin, cout, k) = stride, weight.shape
    m = k // s
    b, _, t = x.shape
    # z[b, i, o, q, j] = sum_c x[b, c, i] w[c, o, q*s + j]: input frame i's contribution to output i*s + q*s + j.
    z = torch.matmul(x.transpose(1, 2), weight.reshape(cin, cout * k)).view(b, t, cout, m, s)
    y = x.new_zeros(b, t + m - 1, s, cout)
    for q in range(m):
        y[:, q : q + t] += z[:, :, :, q, :].transpose(2, 3)
    if bias is not None:
        y += bias
    return y.view(b, (t + m - 1) * s, cout).transpose(1, 2)
