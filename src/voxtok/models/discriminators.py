"""GAN discriminators: multi-period (HiFi-GAN), multi-resolution STFT magnitude (Vocos / WavTokenizer),
multi-scale complex STFT (EnCodec) and multi-band complex STFT (DAC).

Every discriminator takes audio ``[B, 1, S]`` (``[B, S]`` / ``[S]`` promoted) and returns ``(logits, features)``:
``logits[i]`` is sub-discriminator i's score map ``[B, 1, H_i, W_i]`` and ``features[i]`` the list of its hidden
activations (after each hidden convolution and its leaky ReLU; the score map itself is not repeated there) for
feature matching. Convolutions carry weight norm, as in all four references. Spectra come from
``voxtok.audio.stft`` (periodic Hann window).

Each constructs with no arguments into the reference size and has a ``tiny()`` classmethod for tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from voxtok.audio import promote, stft
from voxtok.models.base import Discriminator

__all__ = [
    "MultiBandDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleSTFTDiscriminator",
]

Output = tuple[list[Tensor], list[list[Tensor]]]


def _wn_conv2d(cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
               padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1)) -> nn.Module:  # fmt: skip
    return weight_norm(nn.Conv2d(cin, cout, kernel, stride, padding, dilation))


def _audio(audio: Tensor, min_length: int, owner: str, reason: str) -> Tensor:
    """Promote to ``[B, 1, S]`` and check the channel count and length; errors say what is needed."""
    x = promote(audio)
    if x.shape[1] != 1:
        raise ValueError(f"{owner} takes mono audio [B, 1, S]; got shape {tuple(x.shape)}")
    if x.shape[-1] < min_length:
        raise ValueError(f"{owner} needs at least {min_length} samples ({reason}); got {x.shape[-1]}")
    return x


def _each(discriminators: nn.ModuleList, *args: Tensor | None) -> Output:
    """Run every sub-discriminator on the same input: ``(logits, features)``, one entry per sub-discriminator."""
    outs = [d(*args) for d in discriminators]
    return [lg for lg, _ in outs], [ft for _, ft in outs]


def _conditioned(logits: Tensor, hidden: Tensor, emb: nn.Embedding | None, cond: Tensor | None) -> Tensor:
    # WavTokenizer's conditional variant: a learned per-condition projection of the last hidden map is added to
    # the logits (zero-initialised, so an untrained table leaves the discriminator unconditional).
    if emb is None or cond is None:
        return logits
    e = emb(cond.to(logits.device).long().view(-1))  # [B or 1, C]
    return logits + (e[:, :, None, None] * hidden).sum(dim=1, keepdim=True)


def _embedding(num_embeddings: int | None, dim: int) -> nn.Embedding | None:
    if num_embeddings is None:
        return None
    emb = nn.Embedding(num_embeddings, dim)
    nn.init.zeros_(emb.weight)
    return emb


# ---------------------------------------------------------------------------------------------------------------
# Multi-period (HiFi-GAN, https://arxiv.org/abs/2010.05646; as in Vocos, WavTokenizer and DAC)


class PeriodDiscriminator(nn.Module):
    """Audio ``[B, 1, S]`` reshaped to ``[B, 1, ceil(S / p), p]`` (right reflect padding), then 2-D convs
    with ``(kernel, 1)`` kernels striding over the first axis, so each column sees every p-th sample."""

    def __init__(self, period: int, channels: Sequence[int], kernel_size: int = 5, stride: int = 3,
                 lrelu_slope: float = 0.1, num_embeddings: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.period = period
        self.lrelu_slope = lrelu_slope
        convs, cin = [], 1
        for i, cout in enumerate(channels):
            s = 1 if i == len(channels) - 1 else stride
            convs.append(_wn_conv2d(cin, cout, (kernel_size, 1), (s, 1), (kernel_size // 2, 0)))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.conv_post = _wn_conv2d(cin, 1, (3, 1), padding=(1, 0))
        self.emb = _embedding(num_embeddings, cin)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.lrelu_slope)
            features.append(x)
        return _conditioned(self.conv_post(x), x, self.emb, cond), features


class MultiPeriodDiscriminator(Discriminator):
    """HiFi-GAN's multi-period discriminator: one ``PeriodDiscriminator`` per period.

    Args:
        periods: reshaping periods (default 2, 3, 5, 7, 11: primes, so the sub-discriminators overlap little).
        channels: widths of the hidden convolutions (reference: 32, 128, 512, 1024, 1024).
        kernel_size, stride, lrelu_slope: as HiFi-GAN (5, 3, 0.1).
        num_embeddings: if set, WavTokenizer's conditional variant (``forward(audio, cond)`` with ``cond [B]``).
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
        lrelu_slope: float = 0.1,
        num_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        if not periods or min(periods) < 1:
            raise ValueError(f"periods must be positive integers; got {list(periods)}")
        self.periods = [int(p) for p in periods]
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, channels, kernel_size, stride, lrelu_slope, num_embeddings) for p in self.periods
        )

    @classmethod
    def tiny(cls, **overrides) -> MultiPeriodDiscriminator:
        """Same periods, 4-16 channels: for tests."""
        return cls(**{"channels": (4, 8, 16, 16, 16), **overrides})

    @property
    def min_length(self) -> int:
        """Shortest input: reflect-padding to a multiple of the largest period needs more samples than the pad."""
        return max(self.periods)

    def forward(self, audio: Tensor, cond: Tensor | None = None) -> Output:
        """Audio ``[B, 1, S]`` -> ``(logits, features)``, one entry per period."""
        x = _audio(audio, self.min_length, type(self).__name__, f"padding to a multiple of period {max(self.periods)}")
        return _each(self.discriminators, x, cond)


# ---------------------------------------------------------------------------------------------------------------
# Multi-resolution STFT magnitude (UnivNet, https://arxiv.org/abs/2106.07889; as in Vocos and WavTokenizer)


class ResolutionDiscriminator(nn.Module):
    """``|STFT|`` ``[B, 1, F, frames]`` through five strided 2-D convs and a 3x3 output conv (Vocos' layout)."""

    def __init__(self, resolution: tuple[int, int, int], channels: int = 64, lrelu_slope: float = 0.1,
                 num_embeddings: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = resolution
        self.lrelu_slope = lrelu_slope
        c = channels
        self.convs = nn.ModuleList(
            [
                _wn_conv2d(1, c, (7, 5), (2, 2), (3, 2)),
                _wn_conv2d(c, c, (5, 3), (2, 1), (2, 1)),
                _wn_conv2d(c, c, (5, 3), (2, 2), (2, 1)),
                _wn_conv2d(c, c, (3, 3), (2, 1), (1, 1)),
                _wn_conv2d(c, c, (3, 3), (2, 2), (1, 1)),
            ]
        )
        self.conv_post = _wn_conv2d(c, 1, (3, 3), padding=(1, 1))
        self.emb = _embedding(num_embeddings, c)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        # Rectangular window, as Vocos / WavTokenizer's resolution discriminator (torch.stft with window=None).
        x = stft(x, self.n_fft, self.hop_length, self.win_length, center=True, window="rect").abs()
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.lrelu_slope)
            features.append(x)
        return _conditioned(self.conv_post(x), x, self.emb, cond), features


class MultiResolutionDiscriminator(Discriminator):
    """Magnitude-spectrogram discriminators at several STFT resolutions (Vocos / WavTokenizer's MRD).

    Args:
        resolutions: ``(n_fft, hop_length, win_length)`` per sub-discriminator
            (default (1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)).
        channels: width of every hidden convolution (64).
        num_embeddings: if set, WavTokenizer's conditional variant (``forward(audio, cond)``).
    """

    def __init__(
        self,
        resolutions: Sequence[tuple[int, int, int]] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)),
        channels: int = 64,
        lrelu_slope: float = 0.1,
        num_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(r, channels, lrelu_slope, num_embeddings)
            for r in self.resolutions  # type: ignore[arg-type]
        )

    @classmethod
    def tiny(cls, **overrides) -> MultiResolutionDiscriminator:
        """Windows of 64-256 samples and 4 channels: for tests."""
        return cls(**{"resolutions": ((128, 32, 128), (256, 64, 256), (64, 16, 64)), "channels": 4, **overrides})

    @property
    def min_length(self) -> int:
        """Shortest input: one full window of the largest resolution."""
        return max(r[2] for r in self.resolutions)

    def forward(self, audio: Tensor, cond: Tensor | None = None) -> Output:
        """Audio ``[B, 1, S]`` -> ``(logits, features)``, one entry per resolution."""
        x = _audio(audio, self.min_length, type(self).__name__, "one window of the largest STFT resolution")
        return _each(self.discriminators, x, cond)


# ---------------------------------------------------------------------------------------------------------------
# Multi-scale complex STFT (EnCodec, https://arxiv.org/abs/2210.13438)


class STFTDiscriminator(nn.Module):
    """EnCodec's ``DiscriminatorSTFT``: normalised complex STFT (``center=False``) as real/imag channels
    ``[B, 2, frames, F]``, a 2-D conv, three time-dilated (1, 2)-strided convs, a square conv, then the output."""

    def __init__(self, filters: int, n_fft: int, hop_length: int, win_length: int, max_filters: int = 1024,
                 filters_scale: int = 1, kernel_size: tuple[int, int] = (3, 9), dilations: Sequence[int] = (1, 2, 4),
                 stride: tuple[int, int] = (1, 2), lrelu_slope: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.lrelu_slope = lrelu_slope
        k0, k1 = kernel_size
        convs = [_wn_conv2d(2, filters, kernel_size, padding=((k0 - 1) // 2, (k1 - 1) // 2))]
        cin = min(filters_scale * filters, max_filters)
        for i, d in enumerate(dilations):
            cout = min(filters_scale ** (i + 1) * filters, max_filters)
            convs.append(_wn_conv2d(cin, cout, kernel_size, stride, ((k0 - 1) * d // 2, (k1 - 1) // 2), (d, 1)))
            cin = cout
        cout = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        convs.append(_wn_conv2d(cin, cout, (k0, k0), padding=((k0 - 1) // 2, (k0 - 1) // 2)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = _wn_conv2d(cout, 1, (k0, k0), padding=((k0 - 1) // 2, (k0 - 1) // 2))
        # torchaudio's normalized=True: divide by the window's L2 norm.
        self.register_buffer("scale", torch.tensor(1.0 / math.sqrt(_hann_energy(win_length))), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        z = stft(x[:, 0], self.n_fft, self.hop_length, self.win_length, center=False) * self.scale  # [B, F, T]
        z = torch.stack([z.real, z.imag], dim=1).transpose(2, 3)  # [B, 2, frames, F]
        features = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), self.lrelu_slope)
            features.append(z)
        return self.conv_post(z), features


def _hann_energy(n: int) -> float:
    return float(torch.hann_window(n, periodic=True, dtype=torch.float64).square().sum())


class MultiScaleSTFTDiscriminator(Discriminator):
    """EnCodec's MS-STFT discriminator: ``STFTDiscriminator`` at several scales.

    Args:
        filters: width of the convolutions (32).
        n_ffts, hop_lengths, win_lengths: per scale (EnCodec's five: 2048 ... 128 with hop = n_fft / 4).
        lrelu_slope: 0.2 as EnCodec.
    """

    def __init__(
        self,
        filters: int = 32,
        n_ffts: Sequence[int] = (1024, 2048, 512, 256, 128),
        hop_lengths: Sequence[int] = (256, 512, 128, 64, 32),
        win_lengths: Sequence[int] = (1024, 2048, 512, 256, 128),
        lrelu_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError(
                f"n_ffts, hop_lengths, win_lengths need equal lengths; got {len(n_ffts)}, {len(hop_lengths)}, "
                f"{len(win_lengths)}"
            )
        self.win_lengths = [int(w) for w in win_lengths]
        self.n_ffts = [int(n) for n in n_ffts]
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(filters, n, h, w, lrelu_slope=lrelu_slope)
            for n, h, w in zip(self.n_ffts, hop_lengths, self.win_lengths, strict=True)
        )

    @classmethod
    def tiny(cls, **overrides) -> MultiScaleSTFTDiscriminator:
        """Three scales of 64-256 samples and 4 filters: for tests."""
        return cls(**{"filters": 4, "n_ffts": (128, 256, 64), "hop_lengths": (32, 64, 16),
                      "win_lengths": (128, 256, 64), **overrides})  # fmt: skip

    @property
    def min_length(self) -> int:
        """Shortest input: one un-centred frame of the largest FFT."""
        return max(self.n_ffts)

    def forward(self, audio: Tensor) -> Output:
        """Audio ``[B, 1, S]`` -> ``(logits, features)``, one entry per scale."""
        x = _audio(audio, self.min_length, type(self).__name__, "one frame of the largest FFT, without centring")
        return _each(self.discriminators, x)


# ---------------------------------------------------------------------------------------------------------------
# Multi-band complex STFT (DAC, https://arxiv.org/abs/2306.06546)


class BandDiscriminator(nn.Module):
    """DAC's ``MRD`` at one window length: the complex STFT ``[B, 2, frames, F]`` is split into frequency bands,
    each band goes through its own conv stack, the outputs are joined along frequency and scored together."""

    def __init__(self, window_length: int, bands: Sequence[tuple[float, float]], channels: int = 32,
                 hop_factor: float = 0.25, lrelu_slope: float = 0.1) -> None:  # fmt: skip
        super().__init__()
        self.window_length = window_length
        self.hop_length = int(window_length * hop_factor)
        self.lrelu_slope = lrelu_slope
        n_bins = window_length // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
        c = channels

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    _wn_conv2d(2, c, (3, 9), padding=(1, 4)),
                    _wn_conv2d(c, c, (3, 9), (1, 2), (1, 4)),
                    _wn_conv2d(c, c, (3, 9), (1, 2), (1, 4)),
                    _wn_conv2d(c, c, (3, 9), (1, 2), (1, 4)),
                    _wn_conv2d(c, c, (3, 3), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = _wn_conv2d(c, 1, (3, 3), padding=(1, 1))

    def spectrogram(self, x: Tensor) -> Tensor:
        """``[B, 1, S]`` -> ``[B, 2, ceil(S / hop), F]``: audiotools' ``match_stride`` framing, as DAC uses."""
        n, hop = x.shape[-1], self.hop_length
        right = math.ceil(n / hop) * hop - n
        pad = (self.window_length - hop) // 2
        x = F.pad(x, (pad, pad + right), mode="reflect")
        spec = stft(x[:, 0], self.window_length, hop, center=True)[..., 2:-2]  # [B, F, frames]
        return torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = self.spectrogram(x)
        features, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs, strict=True):
            band = spec[..., lo:hi]
            for conv in convs:
                band = F.leaky_relu(conv(band), self.lrelu_slope)
                features.append(band)
            outs.append(band)
        return self.conv_post(torch.cat(outs, dim=-1)), features


class MultiBandDiscriminator(Discriminator):
    """DAC's multi-band, multi-resolution complex-STFT discriminator (DAC calls it ``MRD``).

    Args:
        window_lengths: STFT window (= n_fft) per sub-discriminator (2048, 1024, 512); hop = window / 4.
        bands: frequency bands as fractions of the bins ((0, .1), (.1, .25), (.25, .5), (.5, .75), (.75, 1)).
        channels: width of every convolution (32).
        normalize: DAC's preprocessing: remove the mean and scale the peak to 0.8 before the STFT.
    """

    def __init__(
        self,
        window_lengths: Sequence[int] = (2048, 1024, 512),
        bands: Sequence[tuple[float, float]] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)),
        channels: int = 32,
        hop_factor: float = 0.25,
        lrelu_slope: float = 0.1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.window_lengths = [int(w) for w in window_lengths]
        if any(not 0.0 <= lo < hi <= 1.0 for lo, hi in bands):
            raise ValueError(f"bands must be (low, high) fractions with 0 <= low < high <= 1; got {list(bands)}")
        self.normalize = normalize
        self.discriminators = nn.ModuleList(
            BandDiscriminator(w, bands, channels, hop_factor, lrelu_slope) for w in self.window_lengths
        )

    @classmethod
    def tiny(cls, **overrides) -> MultiBandDiscriminator:
        """Windows of 64-256 samples and 4 channels: for tests."""
        return cls(**{"window_lengths": (256, 128, 64), "channels": 4, **overrides})

    @property
    def min_length(self) -> int:
        """Shortest input: one window of the largest resolution (the reflect padding needs about that much)."""
        return max(self.window_lengths)

    def forward(self, audio: Tensor) -> Output:
        """Audio ``[B, 1, S]`` -> ``(logits, features)``, one entry per window length."""
        x = _audio(audio, self.min_length, type(self).__name__, "one window of the largest STFT resolution")
        if self.normalize:
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return _each(self.discriminators, x)
