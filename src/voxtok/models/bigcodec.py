"""BigCodec's acoustic encoder (X-codec2's conv stack) with anti-aliased SnakeBeta activations.

BigCodec (Xin et al. 2024, https://arxiv.org/abs/2409.05377) and X-codec2 (Ye et al. 2025,
https://arxiv.org/abs/2502.04128) encode the waveform with DAC-style residual blocks, but every activation is a
SnakeBeta run at twice the sample rate between a Kaiser-windowed sinc upsampler and a matching low-pass
downsampler (BigVGAN's "anti-aliased multi-periodicity" activation, Lee et al. 2023,
https://arxiv.org/abs/2206.04658): a periodic nonlinearity makes harmonics above Nyquist, which would otherwise
fold back into the band as aliasing.

- ``kaiser_sinc_filter``: the low-pass filter both resamplers use.
- ``SnakeBeta``: ``x + sin(x * exp(alpha))^2 / exp(beta)``, per channel, log-scale parameters.
- ``AntiAliasedActivation``: upsample x2 -> activation -> low-pass and downsample x2, ``[B, C, T] -> [B, C, T]``.
- ``BigCodecEncoder``: audio ``[B, 1, S]`` -> latents ``[B, D, ceil(S / hop)]``.

Every convolution is a voxtok ``Conv1d`` with "same" zero padding; for the kernel / stride pairs used here
(``2 * stride`` kernels, odd kernels at stride 1) its windows are exactly those of X-codec2's symmetric padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.models.base import Encoder
from voxtok.models.conv import Conv1d

__all__ = ["AntiAliasedActivation", "BigCodecEncoder", "SnakeBeta", "kaiser_sinc_filter"]


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    """A Kaiser-windowed sinc low-pass filter ``[kernel_size]`` (float32) whose taps sum to 1.

    Args:
        cutoff: cutoff frequency as a fraction of the sample rate, in ``(0, 0.5]``.
        half_width: half the transition band, same unit; with the kernel size it fixes the Kaiser ``beta``
            through Kaiser's empirical attenuation formula (the rule BigVGAN and X-codec2 use).
        kernel_size: taps; an even size is centred between two samples.
    """
    if not 0.0 < cutoff <= 0.5:
        raise ValueError(f"cutoff must be in (0, 0.5]; got {cutoff}")
    if kernel_size < 2:
        raise ValueError(f"kernel_size must be >= 2; got {kernel_size}")
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95  # dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    # On the CPU whatever the default device: the taps are constants read back as Python floats (and a codec
    # can then be built on the meta device, e.g. to count its parameters).
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta, dtype=torch.float64, device="cpu")
    offset = 0.5 if kernel_size % 2 == 0 else 0.0
    t = torch.arange(kernel_size, dtype=torch.float64, device="cpu") - half + offset
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).float()


class SnakeBeta(nn.Module):
    """SnakeBeta ``x + sin(x * a)^2 / b`` with per-channel ``a = exp(alpha)``, ``b = exp(beta)``.

    ``alpha`` and ``beta`` ``[C]`` are stored on a log scale (as BigVGAN's ``alpha_logscale``); zeros give
    ``a = b = 1``. The ``1e-9`` keeps ``1 / b`` finite. Input and output ``[B, C, T]``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T]`` -> ``[B, C, T]``."""
        a = self.alpha.exp()[:, None]
        inv_b = (self.beta.exp() + 1e-9).reciprocal()[:, None]
        if torch.is_grad_enabled():
            return x + inv_b * torch.sin(x * a).square()
        # Inference: one temporary instead of four.
        s = torch.mul(x, a).sin_().square_()
        return torch.addcmul(x, s, inv_b, out=s)


class AntiAliasedActivation(nn.Module):
    """``activation`` applied at ``2x`` the rate: ``[B, C, T]`` -> ``[B, C, T]``.

    Upsampling inserts a zero between samples and low-passes with ``kaiser_sinc_filter(0.25, 0.3, 12)`` (scaled
    by 2 to keep the level); downsampling low-passes with the same filter and keeps every other sample. Both ends
    of the signal are extended by repeating the edge sample (replicate padding), so an output near an edge
    depends on the edge value, not on zeros. This is X-codec2's (and BigVGAN's) ``Activation1d`` with its
    ``UpSample1d`` / ``DownSample1d``, sample for sample.

    Computed in polyphase form: the even and the odd samples of the upsampled signal are each a 6-tap filter of
    the input, the activation runs on the two phases separately, and the downsampler reads both phases directly.
    No zero-stuffed or interleaved signal is ever made, and each filter is a few fused multiply-adds over shifted
    slices, which on the CPU runs several times faster than the depthwise (transposed) convolutions computing the
    same sums.

    Args:
        activation: an elementwise ``[B, C, T]`` module (``SnakeBeta`` in X-codec2).
        kernel_size: taps of both filters (X-codec2: 12); even.
    """

    ratio = 2

    def __init__(self, activation: nn.Module, kernel_size: int = 12) -> None:
        super().__init__()
        if kernel_size < 2 or kernel_size % 2:
            raise ValueError(f"kernel_size must be even and >= 2; got {kernel_size}")
        self.act = activation
        self.kernel_size = k = kernel_size
        taps = kaiser_sinc_filter(0.25, 0.3, k)
        self.register_buffer("filter", taps, persistent=False)  # [K], for reference and tests
        w = [float(v) for v in taps]  # Python floats: no device sync when they scale a slice
        # Upsampling (a stride-2 transposed convolution of the input replicate-padded by k/2 - 1, times 2, with
        # `trim` leading samples dropped): output 2j + p sums taps of one parity against k/2 consecutive inputs.
        # Each phase is stored as (start in the padded input, weights in input order).
        self.up_pad = k // 2 - 1
        trim = 2 * self.up_pad + (k - 2) // 2
        self.up_phases: list[tuple[int, list[float]]] = []
        for p in range(2):
            parity = (p + trim) % 2
            last = (p + trim - parity) // 2  # padded-input index of tap `parity` for output phase p, j = 0
            weights = [2.0 * v for v in w[parity::2]][::-1]
            self.up_phases.append((last - (len(weights) - 1), weights))
        # Downsampling: out[j] = sum_i w[i] * u[clamp(2j + i - (k/2 - 1))], u the upsampled signal. Tap i reads
        # phase (i - k/2 + 1) % 2 of u at offset floor((i - k/2 + 1) / 2) from j.
        self.down_taps: list[tuple[int, int, float]] = []
        for i, v in enumerate(w):
            rel = i - (k // 2 - 1)
            self.down_taps.append((rel % 2, rel // 2, v))
        offsets = [[o for ph, o, _ in self.down_taps if ph == p] for p in range(2)]
        self.down_pads = [(max(0, -min(o)), max(0, max(o))) for o in offsets]  # (left, right) per phase

    @staticmethod
    def _fir(x: Tensor, start: int, weights: list[float], length: int) -> Tensor:
        """``sum_m weights[m] * x[..., start + m : start + m + length]`` as one product and fused adds."""
        acc = x[..., start : start + length] * weights[0]
        for m in range(1, len(weights)):
            acc.add_(x[..., start + m : start + m + length], alpha=weights[m])
        return acc

    def _up_phases(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, C, T]`` -> the even and the odd samples of the upsampled signal, each ``[B, C, T]``."""
        t = x.shape[-1]
        xp = F.pad(x, (self.up_pad, self.up_pad), mode="replicate")
        even, odd = (self._fir(xp, start, weights, t) for start, weights in self.up_phases)
        return even, odd

    def _down_phases(self, even: Tensor, odd: Tensor) -> Tensor:
        """The two phases of a ``[B, C, 2T]`` signal -> its low-passed, decimated ``[B, C, T]``.

        The replicate padding of the interleaved signal continues past its first sample with ``even[0]`` and
        past its last with ``odd[-1]``, whichever phase reads there."""
        t = even.shape[-1]
        first, last = even[..., :1], odd[..., -1:]
        padded = []
        for p, sig in enumerate((even, odd)):
            left, right = self.down_pads[p]
            padded.append(torch.cat([first.expand(*sig.shape[:-1], left), sig, last.expand(*sig.shape[:-1], right)],
                                    dim=-1))  # fmt: skip
        acc = None
        for p, off, v in self.down_taps:
            piece = padded[p][..., self.down_pads[p][0] + off :][..., :t]
            if acc is None:
                acc = piece * v
            else:
                acc.add_(piece, alpha=v)
        assert acc is not None
        return acc

    def upsample(self, x: Tensor) -> Tensor:
        """``[B, C, T]`` -> ``[B, C, 2T]``: zero-stuffing and low-pass (the edges replicate-padded)."""
        even, odd = self._up_phases(x)
        return torch.stack([even, odd], dim=-1).flatten(-2)

    def downsample(self, x: Tensor) -> Tensor:
        """``[B, C, 2T]`` -> ``[B, C, T]``: low-pass and keep every other sample (the edges replicate-padded)."""
        if x.shape[-1] % 2:
            raise ValueError(f"downsample takes an even number of samples; got {x.shape[-1]}")
        return self._down_phases(x[..., 0::2], x[..., 1::2])

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T]`` -> ``[B, C, T]``."""
        even, odd = self._up_phases(x)
        return self._down_phases(self.act(even), self.act(odd))


def _snake(channels: int) -> AntiAliasedActivation:
    return AntiAliasedActivation(SnakeBeta(channels))


class ResidualUnit(nn.Module):
    """``x + conv_1x1(act(conv_7(act(x), dilation)))`` at a constant width: ``[B, C, T]`` -> ``[B, C, T]``."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.act1 = _snake(channels)
        self.conv1 = Conv1d(channels, channels, kernel_size=7, dilation=dilation)
        self.act2 = _snake(channels)
        self.conv2 = Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9), an activation, and a strided convolution that doubles the width:
    ``[B, C, T]`` -> ``[B, 2C, ceil(T / stride)]`` (kernel ``2 * stride``)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.units = nn.ModuleList(ResidualUnit(channels, d) for d in (1, 3, 9))
        self.act = _snake(channels)
        self.down = Conv1d(channels, 2 * channels, kernel_size=2 * stride, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.units:
            x = unit(x)
        return self.down(self.act(x))


class BigCodecEncoder(Encoder):
    """BigCodec / X-codec2 acoustic encoder: audio ``[B, 1, S]`` -> latents ``[B, dimension, ceil(S / hop)]``.

    ``conv_in`` (kernel 7) to ``channels``, one ``EncoderBlock`` per ratio (width doubles each time), a final
    anti-aliased SnakeBeta and ``conv_out`` (kernel 3) to ``dimension``. Each strided convolution pads the last,
    partial stride, so any ``S`` gives ``ceil(S / hop)`` frames; for ``S`` a multiple of ``hop`` (what
    ``Codec`` feeds it) the frames are exactly X-codec2's.

    Args:
        dimension: output width (X-codec2: ``hidden_size`` = 1024).
        channels: width after ``conv_in`` (X-codec2: ``encoder_hidden_size`` = 48).
        ratios: downsampling per block (X-codec2: ``[2, 2, 4, 4, 5]``, hop 320).
    """

    def __init__(self, dimension: int = 1024, channels: int = 48, ratios: Sequence[int] = (2, 2, 4, 4, 5)) -> None:
        super().__init__()
        ratios = [int(r) for r in ratios]
        if not ratios or any(r < 1 for r in ratios) or dimension < 1 or channels < 1:
            raise ValueError(f"BigCodecEncoder needs dimension, channels >= 1 and ratios >= 1; got "
                             f"{dimension}, {channels}, {ratios}")  # fmt: skip
        self.channels = 1
        self.dimension = int(dimension)
        self.ratios = ratios
        self.hop_length = math.prod(ratios)
        self.conv_in = Conv1d(1, channels, kernel_size=7)
        self.blocks = nn.ModuleList(EncoderBlock(channels * 2**i, r) for i, r in enumerate(ratios))
        width = channels * 2 ** len(ratios)
        self.act_out = _snake(width)
        self.conv_out = Conv1d(width, dimension, kernel_size=3)

    def output_length(self, input_length: int) -> int:
        return -(-int(input_length) // self.hop_length)

    def forward(self, audio: Tensor) -> Tensor:
        """``[B, 1, S]`` -> ``[B, dimension, ceil(S / hop)]``."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"BigCodecEncoder takes mono audio [B, 1, S]; got shape {tuple(audio.shape)}")
        x = self.conv_in(audio)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(self.act_out(x))
