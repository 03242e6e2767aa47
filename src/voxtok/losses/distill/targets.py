"""Teacher targets on the codec's frame axis: frame alignment between rates, and token placement over an utterance."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ALIGN_MODES", "align_frames", "spread_placement"]

ALIGN_MODES = ("auto", "linear", "area", "nearest")


def _resize(x: Tensor, size: int, mode: str) -> Tensor:
    """``[L, H]`` -> ``[size, H]`` along time."""
    if x.shape[0] == size:
        return x
    if mode == "auto":
        mode = "area" if x.shape[0] > size else "linear"
    xt = x.t()[None]  # [1, H, L]
    if mode == "area":
        y = F.adaptive_avg_pool1d(xt, size)
    elif mode == "linear":
        y = F.interpolate(xt, size=size, mode="linear", align_corners=False)
    elif mode == "nearest":
        y = F.interpolate(xt, size=size, mode="nearest")
    else:
        raise ValueError(f"align must be one of {ALIGN_MODES}; got {mode!r}")
    return y[0].t()


def align_frames(
    features: Tensor,
    num_frames: int,
    feature_lengths: Tensor | None = None,
    frame_lengths: Tensor | None = None,
    mode: str = "auto",
) -> Tensor:
    """Map teacher frames ``[B, T', H]`` onto ``num_frames`` codec frames: ``[B, T, H]``.

    Each item's valid teacher frames (``feature_lengths``) are resized to its valid codec frames
    (``frame_lengths``), so different rates line up in time whichever is faster. ``mode="auto"`` averages
    (``"area"``) when the teacher has more frames and interpolates linearly when it has fewer; padded codec
    frames are left at 0.
    """
    b, t_in, h = features.shape
    if feature_lengths is None:
        feature_lengths = torch.full((b,), t_in, dtype=torch.long)
    if frame_lengths is None:
        frame_lengths = torch.full((b,), num_frames, dtype=torch.long)
    out = features.new_zeros(b, num_frames, h)
    for i in range(b):
        n_in, n_out = int(feature_lengths[i]), int(frame_lengths[i])
        if n_in <= 0 or n_out <= 0:
            continue
        if n_in > t_in or n_out > num_frames:
            raise ValueError(
                f"item {i}: lengths ({n_in} teacher, {n_out} codec frames) exceed the tensors ({t_in}, {num_frames})"
            )
        out[i, :n_out] = _resize(features[i, :n_in], n_out, mode)
    return out


def spread_placement(char_counts: Sequence[int] | Tensor, num_frames: int) -> Tensor:
    """Token index for each of ``num_frames`` frames, each token spanning frames in proportion to its characters.

    Spans are ``num_frames * chars / total`` rounded by largest remainder, so they add up to ``num_frames``
    and each is within one frame of its share. When there are at least as many frames as tokens, a token whose
    share rounds to 0 takes a frame from the longest span, so every token is heard. Every frame gets a token and
    indices never decrease (token order is kept). Returns ``[num_frames]`` int64.
    """
    counts = torch.as_tensor(char_counts, dtype=torch.float64).clamp(min=1)
    n = counts.numel()
    if n == 0:
        raise ValueError("cannot place 0 tokens; the transcript produced no tokens")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive; got {num_frames}")
    quota = counts / counts.sum() * num_frames
    spans = quota.floor().long()
    left = num_frames - int(spans.sum())
    if left > 0:
        # stable sort: equal remainders go to the earlier token
        order = torch.sort(quota - spans, descending=True, stable=True).indices
        spans[order[:left]] += 1
    if num_frames >= n:
        for j in (spans == 0).nonzero()[:, 0].tolist():
            spans[int(spans.argmax())] -= 1
            spans[j] += 1
    return torch.repeat_interleave(torch.arange(n), spans)
