"""Reconstruction losses on waveforms: multi-scale log-mel, multi-resolution STFT, waveform L1, SI-SDR and the
envelope correlation behind STOI.

All take ``(prediction, target)`` audio ``[B, 1, S]`` (``[B, S]`` and ``[S]`` are promoted; several channels are
treated as separate signals) and an optional ``lengths`` ``[B]`` in samples. With ``lengths``, samples past an
item's length are zeroed in both signals and STFT frames past ``1 + length // hop`` are left out of the mean, so
the content of the padding never changes the loss.

STFTs and mel filterbanks come from ``voxtok.audio`` (equal to librosa's); each scale's filterbank is built once
in the constructor and kept as a non-persistent buffer, so it follows ``.to(device)`` but never enters a
checkpoint. Every loss runs with autocast off and half-precision inputs upcast to float32: under ``bf16-mixed``
the mel filterbank's matmul would otherwise round spectra to 8 bits of mantissa before the log.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from voxtok.audio import lengths_to_mask, mel_filterbank, promote, stft

__all__ = [
    "EnvelopeCorrelationLoss",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "SISDRLoss",
    "WaveformL1Loss",
    "shared_spectra",
    "si_sdr",
    "third_octave_bands",
]

_SHARED = threading.local()


@contextmanager
def shared_spectra() -> Iterator[None]:
    """Inside the block, ``|STFT|`` of one signal at one resolution is computed once and shared by every loss
    that asks for it (the multi-scale mel and the multi-resolution STFT losses at the same sizes): the forward
    and backward passes of those STFTs are a sizeable share of a training step. Results are equal to computing
    them apart; the cache lives until the block ends. A float16 / bfloat16 signal is upcast by each loss, so only
    float32 (and float64) signals are shared."""
    outer = getattr(_SHARED, "cache", None)
    _SHARED.cache = {} if outer is None else outer
    try:
        yield
    finally:
        _SHARED.cache = outer


def _magnitude(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    """``|stft(x)|`` ``[R, n_fft // 2 + 1, frames]`` of rows ``x`` ``[R, S]``, shared inside ``shared_spectra``."""
    cache = getattr(_SHARED, "cache", None)
    if cache is None:
        return stft(x, n_fft, hop, win).abs()
    # Views of one tensor (the rows each loss reshapes) share storage, shape and strides; the entry keeps ``x``
    # alive so its memory cannot be reused by another tensor while the key stands.
    key = (x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device, x._version, x.requires_grad, n_fft, hop, win)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = (x, stft(x, n_fft, hop, win).abs())
    return hit[1]


_Forward = Callable[[nn.Module, Tensor, Tensor, "Tensor | None"], Tensor]


def _float32(forward: _Forward) -> _Forward:
    """A loss's ``forward`` with autocast off and float16 / bfloat16 inputs upcast to float32 (float32 and
    float64 inputs are left as they are)."""

    @functools.wraps(forward)
    def wrapped(self: nn.Module, prediction: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
        with torch.autocast(device_type=prediction.device.type, enabled=False):
            prediction, target = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
                                  for t in (prediction, target))  # fmt: skip
            return forward(self, prediction, target, lengths)

    return wrapped


def _pair(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    prediction, target = promote(prediction), promote(target)
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape; got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    if prediction.shape[-1] == 0:
        raise ValueError("prediction and target are empty (0 samples)")
    return prediction, target


def _sample_mask(lengths: Tensor | None, x: Tensor) -> Tensor | None:
    """``[B, 1, S]`` float mask (1 inside each item) or None; checks ``lengths`` against the batch."""
    if lengths is None:
        return None
    if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"lengths must be [B] = [{x.shape[0]}]; got shape {tuple(lengths.shape)}")
    if (lengths <= 0).any() or (lengths > x.shape[-1]).any():
        raise ValueError(f"lengths must be in [1, {x.shape[-1]}] samples; got {lengths.tolist()}")
    return lengths_to_mask(lengths.to(x.device), x.shape[-1])[:, None].to(x.dtype)


def _masked_rows(prediction: Tensor, target: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """Both signals with samples past each item's length zeroed, as ``[B * C, S]`` rows for the STFT."""
    smask = _sample_mask(lengths, prediction)
    if smask is not None:
        prediction, target = prediction * smask, target * smask
    b, c, s = prediction.shape
    return prediction.reshape(b * c, s), target.reshape(b * c, s)


def _frame_mask(lengths: Tensor | None, hop: int, frames: int, channels: int) -> Tensor | None:
    """``[B * C, 1, frames]`` float mask of the centred STFT frames inside each item, or None."""
    if lengths is None:
        return None
    valid = torch.clamp(1 + lengths // hop, max=frames)
    mask = lengths_to_mask(valid, frames).repeat_interleave(channels, dim=0)
    return mask[:, None].float()


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    mask = mask.to(device=x.device, dtype=x.dtype).expand_as(x)
    return (x * mask).sum() / mask.sum()


class MultiScaleMelLoss(nn.Module):
    """Multi-scale log-mel L1, as in DAC (``MelSpectrogramLoss``): one STFT per window length with
    ``hop = window // 4`` and its own mel filterbank; the per-scale losses are summed.

    Per scale: ``log_weight * L1(log10(clamp(M_p, eps) ** pow), log10(clamp(M_t, eps) ** pow))
    + mag_weight * L1(M_p, M_t)``, where ``M`` is the mel filterbank applied to the magnitude ``|STFT|``
    raised to ``power`` (1 for a magnitude mel spectrogram, 2 for a power one).

    Args:
        sample_rate: audio rate in Hz (sets the mel scale).
        window_lengths: STFT sizes, one scale each (DAC: 32 ... 2048).
        n_mels: mel bins per scale: one int for all scales or one per scale (DAC: 5, 10, ..., 320).
        clamp_eps: floor before the log, so silence stays finite.
        power: exponent on ``|STFT|`` before the mel filters.
        pow: exponent after clamping, before the log (DAC's ``pow``; 1 leaves the log mel as is).
        log_weight, mag_weight: weights of the log-mel and linear-mel L1 terms.
        f_min, f_max: mel band edges in Hz (``f_max`` None = Nyquist).
    """

    def __init__(
        self,
        sample_rate: int,
        window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        n_mels: int | Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
        clamp_eps: float = 1e-5,
        power: float = 1.0,
        pow: float = 1.0,
        log_weight: float = 1.0,
        mag_weight: float = 0.0,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        window_lengths = [int(w) for w in window_lengths]
        if not window_lengths or any(w < 4 for w in window_lengths):
            raise ValueError(f"window_lengths must be a non-empty list of sizes >= 4; got {window_lengths}")
        mels = [int(n_mels)] * len(window_lengths) if isinstance(n_mels, int) else [int(n) for n in n_mels]
        if len(mels) != len(window_lengths):
            raise ValueError(
                f"n_mels needs one entry per window length ({len(window_lengths)}); got {len(mels)}: {mels}"
            )
        if clamp_eps <= 0:
            raise ValueError(f"clamp_eps must be positive; got {clamp_eps}")
        self.sample_rate = int(sample_rate)
        self.window_lengths = window_lengths
        self.n_mels = mels
        self.clamp_eps = float(clamp_eps)
        self.power = float(power)
        self.pow = float(pow)
        self.log_weight = float(log_weight)
        self.mag_weight = float(mag_weight)
        for i, (w, m) in enumerate(zip(window_lengths, mels, strict=True)):
            fb = mel_filterbank(self.sample_rate, w, m, f_min, f_max)
            self.register_buffer(f"mel_fb_{i}", fb, persistent=False)

    def _mel(self, x: Tensor, i: int) -> Tensor:
        w = self.window_lengths[i]
        mag = _magnitude(x, w, w // 4, w)
        if self.power != 1.0:
            mag = mag.pow(self.power)
        fb: Tensor = getattr(self, f"mel_fb_{i}")
        return torch.matmul(fb.to(mag.dtype), mag)  # [B * C, n_mels, frames]

    @_float32
    def forward(self, prediction: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Scalar loss for audio ``[B, C, S]`` (``lengths`` ``[B]`` in samples, optional)."""
        prediction, target = _pair(prediction, target)
        c = prediction.shape[1]
        p, t = _masked_rows(prediction, target, lengths)
        total = prediction.new_zeros(())
        for i, w in enumerate(self.window_lengths):
            mp, mt = self._mel(p, i), self._mel(t, i)
            fmask = _frame_mask(lengths, w // 4, mp.shape[-1], c)
            if self.log_weight:
                lp = mp.clamp(min=self.clamp_eps).pow(self.pow).log10()
                lt = mt.clamp(min=self.clamp_eps).pow(self.pow).log10()
                total = total + self.log_weight * _masked_mean((lp - lt).abs(), fmask)
            if self.mag_weight:
                total = total + self.mag_weight * _masked_mean((mp - mt).abs(), fmask)
        return total


def _safe_norm(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Frobenius norm over ``dims`` whose gradient is 0 (not NaN) where the norm is 0."""
    sq = x.pow(2).sum(dim=dims)
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 at several STFT resolutions (Parallel WaveGAN, Yamamoto et al.
    2020), averaged over resolutions.

    Per resolution and item: ``SC = ||M_t - M_p||_F / ||M_t||_F`` and ``LM = mean |log M_t - log M_p|``
    with ``M = max(|STFT|, eps)``. SC is 0 when both signals are silent (its denominator is floored at ``eps``).

    Args:
        fft_sizes, hop_lengths, win_lengths: one entry per resolution (Parallel WaveGAN's defaults).
        eps: magnitude floor (keeps the log and the ratio finite on silence).
        sc_weight, mag_weight: weights of the two terms.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] = (120, 240, 50),
        win_lengths: Sequence[int] = (600, 1200, 240),
        eps: float = 1e-7,
        sc_weight: float = 1.0,
        mag_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not (len(fft_sizes) == len(hop_lengths) == len(win_lengths)) or not fft_sizes:
            raise ValueError(
                "fft_sizes, hop_lengths and win_lengths need the same non-zero length; got "
                f"{list(fft_sizes)}, {list(hop_lengths)}, {list(win_lengths)}"
            )
        for n, h, w in zip(fft_sizes, hop_lengths, win_lengths, strict=True):
            if not (0 < h and 0 < w <= n):
                raise ValueError(f"each resolution needs 0 < hop and 0 < win <= n_fft; got {n=}, {h=}, {w=}")
        self.fft_sizes = [int(n) for n in fft_sizes]
        self.hop_lengths = [int(h) for h in hop_lengths]
        self.win_lengths = [int(w) for w in win_lengths]
        self.eps = float(eps)
        self.sc_weight = float(sc_weight)
        self.mag_weight = float(mag_weight)

    @_float32
    def forward(self, prediction: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Scalar loss for audio ``[B, C, S]`` (``lengths`` ``[B]`` in samples, optional)."""
        prediction, target = _pair(prediction, target)
        c = prediction.shape[1]
        p, t = _masked_rows(prediction, target, lengths)
        total = prediction.new_zeros(())
        for n, h, w in zip(self.fft_sizes, self.hop_lengths, self.win_lengths, strict=True):
            mp = _magnitude(p, n, h, w).clamp(min=self.eps)
            mt = _magnitude(t, n, h, w).clamp(min=self.eps)
            fmask = _frame_mask(lengths, h, mp.shape[-1], c)
            diff, ref = mt - mp, mt
            if fmask is not None:
                diff, ref = diff * fmask, ref * fmask
            sc = _safe_norm(diff, (1, 2)) / _safe_norm(ref, (1, 2)).clamp(min=self.eps)
            lm = _masked_mean((mt.log() - mp.log()).abs(), fmask)
            total = total + self.sc_weight * sc.mean() + self.mag_weight * lm
        return total / len(self.fft_sizes)


class WaveformL1Loss(nn.Module):
    """Mean absolute sample difference (over valid samples when ``lengths`` is given)."""

    @_float32
    def forward(self, prediction: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
        prediction, target = _pair(prediction, target)
        return _masked_mean((prediction - target).abs(), _sample_mask(lengths, prediction))


def si_sdr(prediction: Tensor, target: Tensor, lengths: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB per signal, ``[B, C]`` (Le Roux et al. 2019), both signals made zero-mean.

    ``10 log10((||a t||^2 + eps) / (||a t - p||^2 + eps))`` with ``a = <p, t> / ||t||^2``; the ``eps`` terms keep
    silence and exact matches finite (an exact match gives a large positive value, not infinity).
    """
    prediction, target = _pair(prediction, target)
    mask = _sample_mask(lengths, prediction)
    if mask is None:
        mask = torch.ones_like(prediction[:, :1])
    count = mask.sum(-1, keepdim=True)
    p = (prediction - (prediction * mask).sum(-1, keepdim=True) / count) * mask
    t = (target - (target * mask).sum(-1, keepdim=True) / count) * mask
    alpha = (p * t).sum(-1, keepdim=True) / (t.pow(2).sum(-1, keepdim=True) + eps)
    proj = alpha * t
    noise = proj - p
    return 10 * torch.log10((proj.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


class SISDRLoss(nn.Module):
    """Negative SI-SDR in dB, averaged over items and channels (lower is better; unbounded below)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = float(eps)

    @_float32
    def forward(self, prediction: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
        return -si_sdr(prediction, target, lengths, self.eps).mean()


def third_octave_bands(sample_rate: int, n_fft: int, num_bands: int = 15, min_freq: float = 150.0) -> Tensor:
    """``[num_bands, n_fft // 2 + 1]`` 0/1 matrix summing FFT bins into one-third-octave bands centred at
    ``min_freq * 2 ** (k / 3)`` (STOI's bands: 150 Hz ... 3.8 kHz for 15). A band with no bin of its own (narrower
    than the bin spacing) takes the bin nearest its centre."""
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    k = torch.arange(num_bands, dtype=torch.float64)
    low, high = min_freq * 2.0 ** ((2 * k - 1) / 6), min_freq * 2.0 ** ((2 * k + 1) / 6)
    if float(high[-1]) > sample_rate / 2:
        raise ValueError(f"{num_bands} third-octave bands from {min_freq} Hz reach {float(high[-1]):.0f} Hz, above "
                         f"the Nyquist frequency of {sample_rate} Hz audio ({sample_rate / 2:.0f} Hz)")
    bands = ((freqs[None] >= low[:, None]) & (freqs[None] < high[:, None])).float()
    empty = bands.sum(1) == 0
    if empty.any():
        centre = min_freq * 2.0 ** (k / 3)
        nearest = (freqs[None] - centre[:, None]).abs().argmin(1)
        bands[empty, nearest[empty]] = 1.0
    return bands


class EnvelopeCorrelationLoss(nn.Module):
    """``1 - d``, where ``d`` is STOI's intermediate intelligibility measure (Taal et al. 2011) computed on the
    losses' own spectra: the mean correlation between the target's and the prediction's one-third-octave band
    envelopes over short segments, after scaling each prediction segment to the target's energy and clipping it at
    ``-clip_db`` dB signal-to-distortion. It rewards what STOI measures (the temporal envelope in 150 Hz ... 4.3 kHz
    bands over about 400 ms) and ignores what it does not (the absolute level, fine spectral detail, phase).

    It differs from STOI in three ways, all for the sake of a cheap, smooth loss: spectra at the audio's own rate
    and STFT size (shared with the other spectral losses at that size inside ``shared_spectra``) instead of a
    10 kHz resampling; segments whose target energy is more than ``silence_db`` below the item's loudest segment are
    left out instead of STOI's frame removal; and square roots and ratios are kept away from 0.

    Args:
        sample_rate: audio rate in Hz.
        n_fft, hop_length: STFT size and hop (Hann window of ``n_fft``); 512 / 128 at 16 kHz is 32 ms / 8 ms.
        num_bands, min_freq: the one-third-octave bands (STOI: 15 from 150 Hz).
        segment_seconds: envelope segment length (STOI: 30 frames of 12.8 ms, 384 ms); segments advance one frame.
        clip_db: STOI's lower signal-to-distortion bound beta (-15 dB).
        silence_db: segments this far below the item's loudest are left out (STOI drops frames 40 dB down).
    """

    def __init__(self, sample_rate: int, n_fft: int = 512, hop_length: int = 128, num_bands: int = 15,
                 min_freq: float = 150.0, segment_seconds: float = 0.384, clip_db: float = -15.0,
                 silence_db: float = 40.0) -> None:  # fmt: skip
        super().__init__()
        if not (0 < hop_length <= n_fft):
            raise ValueError(f"EnvelopeCorrelationLoss needs 0 < hop_length <= n_fft; got {hop_length}, {n_fft}")
        self.sample_rate, self.n_fft, self.hop = int(sample_rate), int(n_fft), int(hop_length)
        self.segment = max(2, round(segment_seconds * sample_rate / hop_length))
        self.clip = 1.0 + 10.0 ** (-clip_db / 20.0)
        self.silence = 10.0 ** (-silence_db / 10.0)  # an energy ratio
        self.register_buffer("bands", third_octave_bands(sample_rate, n_fft, num_bands, min_freq), persistent=False)

    def _envelopes(self, rows: Tensor) -> Tensor:
        power = _magnitude(rows, self.n_fft, self.hop, self.n_fft).pow(2)
        return (torch.matmul(self.bands.to(power.dtype), power) + 1e-10).sqrt()  # [R, bands, frames]

    @_float32
    def forward(self, prediction: Tensor, target: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Scalar loss in [0, 2] for audio ``[B, C, S]`` (``lengths`` ``[B]`` in samples, optional). Audio shorter
        than one segment (``segment_seconds``) is refused."""
        prediction, target = _pair(prediction, target)
        c = prediction.shape[1]
        p, t = _masked_rows(prediction, target, lengths)
        ep, et = self._envelopes(p), self._envelopes(t)
        frames = et.shape[-1]
        if frames < self.segment:
            raise ValueError(f"EnvelopeCorrelationLoss needs at least {self.segment} STFT frames (about "
                             f"{self.segment * self.hop / self.sample_rate:.2f} s); got {frames}")
        sp = ep.unfold(-1, self.segment, 1)  # [R, bands, segments, N]
        st = et.unfold(-1, self.segment, 1)
        energy_t = st.pow(2).sum(-1, keepdim=True)
        scaled = sp * (energy_t / sp.pow(2).sum(-1, keepdim=True)).sqrt()
        clipped = torch.minimum(scaled, st * self.clip)
        a = st - st.mean(-1, keepdim=True)
        b = clipped - clipped.mean(-1, keepdim=True)
        # The clamp keeps a flat segment (a silent prediction) at correlation 0 with a 0, not NaN, gradient.
        norms = (a.pow(2).sum(-1) * b.pow(2).sum(-1)).clamp(min=1e-20).sqrt()
        corr = (a * b).sum(-1) / norms  # [R, bands, segments]
        loud = energy_t.squeeze(-1).sum(1)  # [R, segments]: the target's energy over all bands
        keep = (loud >= self.silence * loud.amax(-1, keepdim=True)).float()
        fmask = _frame_mask(lengths, self.hop, frames, c)
        if fmask is not None:  # a segment counts only when its last frame is inside the item
            keep = keep * fmask[:, 0, self.segment - 1:]
        keep = keep[:, None].expand_as(corr)
        return 1.0 - (corr * keep).sum() / keep.sum().clamp(min=1.0)
