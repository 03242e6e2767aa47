"""Audio I/O and the small signal-processing pieces every other module shares.

- ``read`` / ``write`` go through soundfile (libsndfile): wav, flac, ogg, and mp3 where libsndfile has it.
- ``resample`` is the only resampler in voxtok: soxr for CPU tensors and numpy arrays, julius for tensors on an
  accelerator. Every CPU path (the data pipeline and ``Codec.encode``) therefore gives identical samples.
- ``mel_filterbank``, ``stft``, ``istft`` and ``mel_spectrogram`` replace what torchaudio would have given
  (torchaudio cannot be installed beside the CPU torch wheel; see docs/dependencies.md). They match librosa.

Bad audio raises ``AudioError`` (a ``ValueError``) naming the file or item and the reason, never a NaN that
surfaces three modules later.
"""

from __future__ import annotations

import math
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

__all__ = [
    "AudioError",
    "check_audio",
    "istft",
    "lengths_to_mask",
    "mel_filterbank",
    "mel_spectrogram",
    "promote",
    "read",
    "resample",
    "resampled_length",
    "stft",
    "to_mono",
    "write",
]

PathLike = str | os.PathLike


class AudioError(ValueError):
    """Unreadable, empty, truncated or non-finite audio. The message names the file or item and the reason."""


# ----------------------------------------------------------------------------------------------------------
# Reading and writing


def _wav_truncation(path: Path) -> str | None:
    """Why a RIFF/WAVE file is truncated, or None.

    libsndfile silently clamps a WAV whose ``data`` chunk is shorter than its header declares, so a file cut
    off mid-copy would read as a shorter, valid clip. We compare the declared size with the bytes present.
    Streaming writers that could not seek back store 0 or 0xFFFFFFFF as the size; those are not flagged.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if csize in (0, 0xFFFFFFFF):
                    return None
                present = size - (offset + 8)
                if present < csize:
                    return f"truncated: the data chunk declares {csize} bytes but only {present} are present"
                return None
            offset += 8 + csize + (csize & 1)
    return None


def read(path: PathLike, *, allow_nonfinite: bool = False) -> tuple[Tensor, int]:
    """Read an audio file.

    Args:
        path: a wav, flac, ogg or (where libsndfile supports it) mp3 file.
        allow_nonfinite: keep NaN / Inf samples instead of raising (float WAV files can hold them).

    Returns:
        ``(audio [C, S] float32, sample_rate)``. Integer PCM is scaled to [-1, 1) (16-bit: k / 32768).

    Raises:
        AudioError: the file is missing, empty, truncated, not audio, or holds NaN / Inf samples.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if not p.is_file():
        raise AudioError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: empty file (0 bytes)")
    why = _wav_truncation(p)
    if why is not None:
        raise AudioError(f"{p}: {why}")
    try:
        with sf.SoundFile(str(p)) as f:
            declared = f.frames
            sample_rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{p}: not readable as audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioError(f"{p}: no audio samples (0 frames)")
    # Compressed formats report their length up front; a file cut short decodes to fewer frames.
    if declared > 0 and data.shape[0] < declared:
        raise AudioError(f"{p}: truncated: header declares {declared} frames, decoded {data.shape[0]}")
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    if not allow_nonfinite:
        check_audio(audio, name=str(p))
    return audio, int(sample_rate)


def write(path: PathLike, audio: Tensor | np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write ``audio`` (``[C, S]``, ``[1, C, S]`` or ``[S]``, float in [-1, 1]) to ``path``.

    The format comes from the suffix. ``subtype`` defaults to libsndfile's default for the format (16-bit PCM
    for wav and flac), so a 16-bit file read with ``read`` and written back is bit-exact. Samples outside
    [-1, 1] are clipped by the PCM conversion.

    Raises:
        AudioError: the audio is empty or holds NaN / Inf.
        ValueError: the shape is not one of the above or ``sample_rate`` is not positive.
    """
    if isinstance(audio, Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 3:
        if audio.shape[0] != 1:
            raise ValueError(f"write takes one item; got a batch of shape {audio.shape}")
        audio = audio[0]
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio must be [C, S] or [S]; got shape {audio.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive; got {sample_rate}")
    check_audio(torch.from_numpy(audio), name=str(path))
    sf.write(str(path), audio.T, int(sample_rate), subtype=subtype)


# ----------------------------------------------------------------------------------------------------------
# Validation and shape helpers


def check_audio(audio: Tensor, name: str = "audio") -> None:
    """Raise ``AudioError`` when ``audio`` is empty or holds NaN / Inf; ``name`` goes in the message."""
    if audio.numel() == 0 or audio.shape[-1] == 0:
        raise AudioError(f"{name}: empty audio (shape {tuple(audio.shape)})")
    if not torch.isfinite(audio).all():
        bad = (~torch.isfinite(audio)).nonzero()[0].tolist()
        value = audio[tuple(bad)].item()
        raise AudioError(f"{name}: non-finite sample {value} at index {bad}; audio must be finite")


def promote(audio: Tensor) -> Tensor:
    """``[S]`` -> ``[1, 1, S]``, ``[B, S]`` -> ``[B, 1, S]``, ``[B, C, S]`` unchanged."""
    if audio.dim() == 1:
        return audio[None, None]
    if audio.dim() == 2:
        return audio[:, None]
    if audio.dim() == 3:
        return audio
    raise ValueError(f"audio must be [S], [B, S] or [B, C, S]; got shape {tuple(audio.shape)}")


def to_mono(audio: Tensor) -> Tensor:
    """Average the channel axis, keeping it: ``[C, S]`` -> ``[1, S]``, ``[B, C, S]`` -> ``[B, 1, S]``."""
    if audio.dim() not in (2, 3):
        raise ValueError(f"to_mono takes [C, S] or [B, C, S]; got shape {tuple(audio.shape)}")
    return audio.mean(dim=-2, keepdim=True) if audio.shape[-2] != 1 else audio


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``[B]`` lengths -> ``[B, max_len]`` bool mask, True where the position is inside the item."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be [B]; got shape {tuple(lengths.shape)}")
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


# ----------------------------------------------------------------------------------------------------------
# Resampling


def resampled_length(num_samples: int, from_sr: int, to_sr: int) -> int:
    """Samples after resampling: ``round(num_samples * to_sr / from_sr)`` (halves round up), as soxr gives."""
    return (num_samples * to_sr + from_sr // 2) // from_sr


def resample(audio: Tensor | np.ndarray, from_sr: int, to_sr: int) -> Tensor | np.ndarray:
    """Resample along the last axis; leading axes are kept. Returns the input's type, dtype and device.

    CPU tensors and numpy arrays go through soxr (high quality), tensors on an accelerator through julius
    (a windowed-sinc on the device). The output has ``resampled_length(S, from_sr, to_sr)`` samples either way.
    """
    if from_sr <= 0 or to_sr <= 0:
        raise ValueError(f"sample rates must be positive; got from_sr={from_sr}, to_sr={to_sr}")
    from_sr, to_sr = int(from_sr), int(to_sr)
    if from_sr == to_sr:
        return audio
    n = audio.shape[-1]
    out_len = resampled_length(n, from_sr, to_sr)
    if isinstance(audio, Tensor) and audio.device.type != "cpu":
        import julius

        g = math.gcd(from_sr, to_sr)
        y = julius.resample_frac(audio.float(), from_sr // g, to_sr // g, output_length=out_len)
        return y.to(audio.dtype)
    import soxr

    is_tensor = isinstance(audio, Tensor)
    arr = audio.detach().numpy() if is_tensor else np.asarray(audio)
    in_dtype = arr.dtype
    lead = arr.shape[:-1]
    # soxr wants [frames, channels]; every leading axis becomes a channel.
    flat = arr.reshape(-1, n).T.astype(np.float32 if in_dtype != np.float64 else np.float64)
    flat = np.ascontiguousarray(flat)
    if n == 0:
        y = np.zeros((0, flat.shape[1]), dtype=flat.dtype)
    else:
        y = soxr.resample(flat, from_sr, to_sr, quality="HQ")
    if y.shape[0] != out_len:
        y = y[:out_len] if y.shape[0] > out_len else np.pad(y, ((0, out_len - y.shape[0]), (0, 0)))
    y = np.ascontiguousarray(y.T).reshape(*lead, out_len)
    if is_tensor:
        return torch.from_numpy(y).to(audio.dtype)
    return y.astype(in_dtype, copy=False)


# ----------------------------------------------------------------------------------------------------------
# Spectral helpers (librosa-compatible)


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=64)
def _mel_filterbank_np(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float, htk: bool, norm: str | None
) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(np.array(f_min), htk), _hz_to_mel(np.array(f_max), htk), n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts, htk)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels]))[:, None]
    return weights.astype(np.float32)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> Tensor:
    """Triangular mel filters, ``[n_mels, n_fft // 2 + 1]`` float32, equal to ``librosa.filters.mel``.

    Args:
        sample_rate: Hz.
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
        n_mels: number of filters.
        f_min, f_max: band edges in Hz (``f_max`` defaults to Nyquist).
        htk: HTK mel scale instead of Slaney's.
        norm: ``"slaney"`` (each filter has unit area) or None (peak 1).
    """
    if n_mels <= 0 or n_fft <= 0 or sample_rate <= 0:
        raise ValueError(f"need positive sample_rate, n_fft, n_mels; got {sample_rate}, {n_fft}, {n_mels}")
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None; got {norm!r}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    fb = _mel_filterbank_np(int(sample_rate), int(n_fft), int(n_mels), float(f_min), f_max, bool(htk), norm)
    return torch.from_numpy(fb.copy())


WINDOWS = ("hann", "rect")


def _window(win_length: int, n_fft: int, device: torch.device, dtype: torch.dtype, kind: str = "hann") -> Tensor:
    # Periodic Hann (librosa's default) or rectangular (torch.stft's window=None), centred in n_fft when shorter.
    if kind not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}; got {kind!r}")
    if kind == "hann":
        w = torch.hann_window(win_length, periodic=True, device=device, dtype=dtype)
    else:
        w = torch.ones(win_length, device=device, dtype=dtype)
    if win_length < n_fft:
        left = (n_fft - win_length) // 2
        w = torch.nn.functional.pad(w, (left, n_fft - win_length - left))
    return w


def stft(
    x: Tensor,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    window: str = "hann",
) -> Tensor:
    """Complex STFT: ``[..., S]`` -> ``[..., n_fft // 2 + 1, frames]``.

    ``window`` is ``"hann"`` (periodic, librosa's default) or ``"rect"`` (``torch.stft``'s ``window=None``, which
    Vocos' multi-resolution discriminator uses). ``center=True`` pads ``n_fft // 2`` on both sides (librosa's and
    torch's convention), giving ``1 + S // hop`` frames.
    """
    hop_length = hop_length or n_fft // 4
    win_length = win_length or n_fft
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    if center and pad_mode == "reflect" and flat.shape[-1] <= n_fft // 2:
        pad_mode = "constant"  # reflect padding needs more samples than the pad
    win = _window(win_length, n_fft, x.device, x.dtype if x.is_floating_point() else torch.float32, window)
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        window=win,
        center=center,
        pad_mode=pad_mode,
        return_complex=True,
    )
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def istft(
    spec: Tensor,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    center: bool = True,
    length: int | None = None,
) -> Tensor:
    """Inverse of ``stft`` (same window and centring): ``[..., F, frames]`` -> ``[..., S]``."""
    hop_length = hop_length or n_fft // 4
    win_length = win_length or n_fft
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, spec.shape[-2], spec.shape[-1])
    window = _window(win_length, n_fft, spec.device, spec.real.dtype)
    y = torch.istft(flat, n_fft=n_fft, hop_length=hop_length, window=window, center=center, length=length)
    return y.reshape(*lead, y.shape[-1])


def mel_spectrogram(
    x: Tensor,
    sample_rate: int,
    n_fft: int,
    hop_length: int | None = None,
    n_mels: int = 80,
    power: float = 2.0,
    f_min: float = 0.0,
    f_max: float | None = None,
    center: bool = True,
) -> Tensor:
    """Mel spectrogram ``[..., n_mels, frames]`` = mel filters @ |STFT|^power (librosa's melspectrogram)."""
    mag = stft(x, n_fft, hop_length, center=center).abs()
    if power != 1.0:
        mag = mag.pow(power)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max).to(mag.device, mag.dtype)
    return torch.matmul(fb, mag)
