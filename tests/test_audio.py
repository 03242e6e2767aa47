from __future__ import annotations

import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtok import AudioError, audio

# ---------------------------------------------------------------------------------------------------------
# read / write


@pytest.mark.parametrize("ext", ["wav", "flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_round_trip_is_bit_exact(tmp_path: Path, ext: str, channels: int) -> None:
    rng = np.random.default_rng(0)
    pcm = rng.integers(-32768, 32768, size=(8000, channels), dtype=np.int16)
    pcm[0, 0], pcm[1, 0] = -32768, 32767  # the extremes must survive too
    src = tmp_path / f"src.{ext}"
    sf.write(src, pcm, 16000, subtype="PCM_16")
    x, sr = audio.read(src)
    assert sr == 16000 and x.shape == (channels, 8000) and x.dtype == torch.float32
    # int PCM is scaled to [-1, 1): k / 32768
    assert torch.equal(x, torch.from_numpy(pcm.T.astype(np.float32) / 32768.0))
    dst = tmp_path / f"dst.{ext}"
    audio.write(dst, x, sr)
    back, _ = sf.read(dst, dtype="int16", always_2d=True)
    np.testing.assert_array_equal(back, pcm)


def test_int_pcm_is_scaled(tmp_path: Path) -> None:
    p = tmp_path / "s32.wav"
    sf.write(p, np.array([2**30, -(2**31), 0], dtype=np.int32), 8000, subtype="PCM_32")
    x, _ = audio.read(p)
    assert x.tolist() == [[0.5, -1.0, 0.0]]


@pytest.mark.parametrize("name,rate,channels", [
    ("LJ001-0002.flac", 22050, 1),
    ("2412-153948-0001.flac", 16000, 1),
    ("ami-ES2011a-headset.wav", 16000, 1),
])
def test_reads_real_recordings(data_dir: Path, name: str, rate: int, channels: int) -> None:
    x, sr = audio.read(data_dir / name)
    assert sr == rate and x.shape[0] == channels and x.shape[1] > rate
    assert x.abs().max() <= 1.0 and x.abs().max() > 0.01


def test_reads_ogg_and_mp3_when_libsndfile_has_them(tmp_path: Path) -> None:
    # Two tones: the decoded samples must be the signal (lossy: > 20 dB SNR; measured 33 dB OGG, 36 dB MP3),
    # not only a buffer of about the right length.
    t = np.arange(16000) / 16000
    sig = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t + 1.0)).astype(np.float32)
    formats = sf.available_formats()
    checked = 0
    for ext, fmt in (("ogg", "OGG"), ("mp3", "MP3")):
        if fmt not in formats:
            continue
        p = tmp_path / f"x.{ext}"
        sf.write(p, sig, 16000)
        x, sr = audio.read(p)
        assert sr == 16000 and x.shape == (1, 16000) and x.dtype == torch.float32
        err = x[0].numpy() - sig
        snr = 10 * np.log10(np.sum(sig**2) / np.sum(err**2))
        assert snr > 20, f"{ext}: {snr:.1f} dB"
        checked += 1
    assert checked >= 1, "libsndfile without OGG: unexpected on this platform"


def test_write_accepts_1d_and_batched_single(tmp_path: Path) -> None:
    x = torch.linspace(-0.5, 0.5, 100)
    audio.write(tmp_path / "a.wav", x, 8000)
    audio.write(tmp_path / "b.wav", x[None, None], 8000)
    a, _ = audio.read(tmp_path / "a.wav")
    b, _ = audio.read(tmp_path / "b.wav")
    assert a.shape == (1, 100) and torch.equal(a, b)
    with pytest.raises(ValueError, match="one item"):
        audio.write(tmp_path / "c.wav", torch.zeros(2, 1, 10), 8000)
    with pytest.raises(AudioError, match="non-finite"):
        audio.write(tmp_path / "d.wav", torch.tensor([0.0, float("nan")]), 8000)


# ---------------------------------------------------------------------------------------------------------
# bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        audio.read(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a regular file"):
        audio.read(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        audio.read(p)


def test_zero_frames(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="0 frames"):
        audio.read(p)


def test_non_audio_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.wav"
    p.write_text("these are not samples\n" * 50)
    with pytest.raises(AudioError, match=r"notes\.wav: not readable as audio"):
        audio.read(p)


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_truncated_file(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"full.{ext}"
    rng = np.random.default_rng(1)
    sf.write(p, (rng.standard_normal(16000) * 0.1).astype(np.float32), 16000, subtype="PCM_16")
    data = p.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=rf"cut\.{ext}: .*(truncated|not readable)"):
        audio.read(cut)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    p = tmp_path / "nan.wav"
    x = np.zeros(100, np.float32)
    x[37] = bad
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: non-finite sample .* at index \[0, 37\]"):
        audio.read(p)
    y, _ = audio.read(p, allow_nonfinite=True)
    assert not torch.isfinite(y[0, 37])


def test_check_audio_empty_tensor() -> None:
    with pytest.raises(AudioError, match="item 3: empty audio"):
        audio.check_audio(torch.zeros(1, 0), name="item 3")


# ---------------------------------------------------------------------------------------------------------
# resampling


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return 10 * math.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


def test_resample_round_trip_keeps_sine_above_60db() -> None:
    sr = 44100
    t = np.arange(sr * 2) / sr
    x = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    y = audio.resample(x, 44100, 24000)
    assert y.shape[-1] == 48000
    z = audio.resample(y, 24000, 44100)
    assert z.shape == x.shape
    # the filters' start-up transient is excluded: 10 ms at each end
    edge = sr // 100
    snr = _snr_db(x[edge:-edge].numpy(), z[edge:-edge].numpy())
    assert snr >= 60.0, snr


def test_resample_tensor_and_array_paths_are_identical() -> None:
    rng = np.random.default_rng(2)
    arr = (rng.standard_normal((2, 3, 3001)) * 0.1).astype(np.float32)
    a = audio.resample(arr, 16000, 24000)
    t = audio.resample(torch.from_numpy(arr), 16000, 24000)
    assert isinstance(a, np.ndarray) and isinstance(t, torch.Tensor)
    assert t.shape == (2, 3, audio.resampled_length(3001, 16000, 24000)) == a.shape
    np.testing.assert_array_equal(a, t.numpy())
    # each channel is resampled independently: the same as resampling it alone
    one = audio.resample(arr[1, 2], 16000, 24000)
    np.testing.assert_allclose(one, a[1, 2], atol=1e-6)


def test_resample_keeps_dtype_and_identity() -> None:
    x = torch.randn(1, 100, dtype=torch.float64)
    assert audio.resample(x, 8000, 8000) is x
    assert audio.resample(x, 8000, 16000).dtype == torch.float64
    with pytest.raises(ValueError, match="positive"):
        audio.resample(x, 0, 16000)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5000), rates=st.sampled_from([(16000, 24000), (44100, 24000), (22050, 16000), (48000, 44100)]))
def test_resample_length_property(n: int, rates: tuple[int, int]) -> None:
    x = np.zeros(n, np.float32)
    y = audio.resample(x, *rates)
    assert y.shape == (audio.resampled_length(n, *rates),)
    assert abs(y.shape[0] - n * rates[1] / rates[0]) <= 0.5


@pytest.mark.gpu
def test_resample_on_gpu_close_to_cpu() -> None:
    x = torch.randn(2, 16000) * 0.1
    cpu = audio.resample(x, 16000, 24000)
    gpu = audio.resample(x.cuda(), 16000, 24000)
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    inner = slice(200, -200)
    assert _snr_db(cpu[:, inner].numpy(), gpu[:, inner].cpu().numpy()) > 40


# ---------------------------------------------------------------------------------------------------------
# shape helpers


def test_to_mono_and_promote() -> None:
    x = torch.stack([torch.ones(10), -torch.ones(10) * 3])
    assert torch.equal(audio.to_mono(x), -torch.ones(1, 10))
    assert audio.to_mono(x[None]).shape == (1, 1, 10)
    assert audio.promote(torch.zeros(7)).shape == (1, 1, 7)
    assert audio.promote(torch.zeros(3, 7)).shape == (3, 1, 7)
    with pytest.raises(ValueError, match="got shape"):
        audio.promote(torch.zeros(1, 1, 1, 1))


def test_lengths_to_mask() -> None:
    m = audio.lengths_to_mask(torch.tensor([3, 0, 5]), 5)
    assert m.tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert audio.lengths_to_mask(torch.tensor([2, 4])).shape == (2, 4)


# ---------------------------------------------------------------------------------------------------------
# spectral helpers against librosa


@pytest.mark.parametrize("htk,norm", [(False, "slaney"), (True, None), (False, None)])
@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmax", [(24000, 1024, 100, None), (16000, 512, 80, 7600.0), (44100, 2048, 128, None)]
)
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmax, htk, norm) -> None:
    ours = audio.mel_filterbank(sr, n_fft, n_mels, f_max=fmax, htk=htk, norm=norm)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax, htk=htk, norm=norm)
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("n_fft,hop,win", [(512, 128, None), (1024, 256, 800), (64, 16, None)])
def test_stft_matches_librosa(n_fft, hop, win) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(4000).astype(np.float32)
    ours = audio.stft(torch.from_numpy(x), n_fft, hop, win).numpy()
    ref = librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, pad_mode="reflect")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)


def test_istft_inverts_stft() -> None:
    x = torch.randn(2, 3, 5000)
    spec = audio.stft(x, 512, 128)
    assert spec.shape[:2] == (2, 3)
    y = audio.istft(spec, 512, 128, length=5000)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


def test_mel_spectrogram_matches_librosa(data_dir: Path) -> None:
    x, sr = audio.read(data_dir / "LJ001-0002.flac")
    x = x[0, : sr // 2]
    ours = audio.mel_spectrogram(x, sr, 1024, 256, n_mels=80).numpy()
    ref = librosa.feature.melspectrogram(y=x.numpy(), sr=sr, n_fft=1024, hop_length=256, n_mels=80, pad_mode="reflect")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-5)


def test_rectangular_window_matches_torch_default() -> None:
    x = torch.randn(2, 3000)
    ours = audio.stft(x, 512, 128, 400, window="rect")
    ref = torch.stft(x, 512, 128, 400, window=None, center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(ours, ref)
    with pytest.raises(ValueError, match="window must be one of"):
        audio.stft(x, 512, window="hamming")
