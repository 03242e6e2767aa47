"""Reconstruction losses: zero at identity, finite on silence, librosa / numpy references, SNR monotonicity."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from voxtok.audio import read, resample
from voxtok.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss, SISDRLoss, WaveformL1Loss, si_sdr

SR = 16000


def _losses() -> dict[str, torch.nn.Module]:
    return {
        "mel": MultiScaleMelLoss(SR, window_lengths=(64, 256, 1024), n_mels=(10, 40, 80)),
        "mel_dac_defaults": MultiScaleMelLoss(SR),
        "mrstft": MultiResolutionSTFTLoss(fft_sizes=(256, 512), hop_lengths=(64, 128), win_lengths=(200, 512)),
        "l1": WaveformL1Loss(),
    }


def _signal(batch: int = 2, samples: int = 4000) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = torch.arange(samples) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.1 * torch.sin(2 * torch.pi * 1800 * t)
    return (tone + 0.05 * torch.randn(batch, 1, samples, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("name", list(_losses()))
def test_zero_for_identical_positive_otherwise(name: str) -> None:
    loss = _losses()[name]
    x = _signal()
    assert loss(x, x.clone()).item() == 0.0
    y = x + 0.01 * torch.randn_like(x)
    assert loss(y, x).item() > 0.0


@pytest.mark.parametrize("name", [*list(_losses()), "sisdr"])
def test_finite_with_finite_gradient_on_silence(name: str) -> None:
    loss = SISDRLoss() if name == "sisdr" else _losses()[name]
    silence = torch.zeros(2, 1, 4000)
    for target in (silence, _signal()):
        pred = torch.zeros(2, 1, 4000, requires_grad=True)
        value = loss(pred, target)
        value.backward()
        assert torch.isfinite(value), (name, value)
        assert torch.isfinite(pred.grad).all(), name
    # silent prediction against silent target: nothing to correct
    pred = torch.zeros(2, 1, 4000, requires_grad=True)
    if name != "sisdr":
        assert loss(pred, silence).item() == 0.0


def _mel_reference(pred: np.ndarray, target: np.ndarray, windows, mels, eps=1e-5) -> float:
    total = 0.0
    for w, m in zip(windows, mels, strict=True):
        fb = librosa.filters.mel(sr=SR, n_fft=w, n_mels=m)
        specs = []
        for x in (pred, target):
            mag = np.abs(
                librosa.stft(
                    x.astype(np.float64), n_fft=w, hop_length=w // 4, window="hann", center=True, pad_mode="reflect"
                )
            )
            specs.append(np.log10(np.maximum(fb @ mag, eps)))
        total += np.mean(np.abs(specs[0] - specs[1]))
    return total


def test_mel_matches_librosa_reference() -> None:
    windows, mels = (32, 128, 512, 2048), (5, 20, 80, 320)
    loss = MultiScaleMelLoss(SR, window_lengths=windows, n_mels=mels)
    target = _signal(1, 6000)
    pred = target + 0.05 * torch.randn_like(target)
    expected = _mel_reference(pred[0, 0].numpy(), target[0, 0].numpy(), windows, mels)
    assert loss(pred, target).item() == pytest.approx(expected, abs=1e-4)


def test_mrstft_matches_librosa_reference() -> None:
    ffts, hops, wins = (256, 512), (64, 120), (200, 400)
    loss = MultiResolutionSTFTLoss(ffts, hops, wins)
    target = _signal(1, 6000)
    pred = 0.7 * target + 0.05 * torch.randn_like(target)
    total = 0.0
    for n, h, w in zip(ffts, hops, wins, strict=True):
        mags = [
            np.maximum(
                np.abs(
                    librosa.stft(
                        x[0, 0].numpy().astype(np.float64), n_fft=n, hop_length=h, win_length=w, pad_mode="reflect"
                    )
                ),
                1e-7,
            )
            for x in (pred, target)
        ]
        sc = np.linalg.norm(mags[1] - mags[0]) / np.linalg.norm(mags[1])
        lm = np.mean(np.abs(np.log(mags[1]) - np.log(mags[0])))
        total += sc + lm
    assert loss(pred, target).item() == pytest.approx(total / len(ffts), abs=1e-4)


def test_si_sdr_matches_numpy_reference() -> None:
    target = _signal(2, 3000)
    pred = 0.5 * target + 0.1 * torch.randn_like(target) + 0.2  # scale and offset must not matter, noise must
    got = si_sdr(pred, target)
    for b in range(2):
        p, t = pred[b, 0].double().numpy(), target[b, 0].double().numpy()
        p, t = p - p.mean(), t - t.mean()
        proj = (p @ t) / (t @ t) * t
        ref = 10 * np.log10((proj @ proj) / ((proj - p) @ (proj - p)))
        assert got[b, 0].item() == pytest.approx(ref, abs=1e-3)  # dB; float32 sums over 3000 samples
    assert SISDRLoss()(pred, target).item() == pytest.approx(-got.mean().item(), abs=1e-6)
    # the scale-invariance that gives SI-SDR its name
    assert si_sdr(3 * pred, target)[0, 0].item() == pytest.approx(got[0, 0].item(), abs=1e-3)


def test_mel_loss_monotone_in_snr(data_dir) -> None:
    audio, sr = read(data_dir / "LJ001-0002.flac")
    clean = resample(audio[:1, :sr], sr, SR)[None]  # first second, [1, 1, S]
    noise = torch.randn_like(clean)
    noise = noise / noise.pow(2).mean().sqrt() * clean.pow(2).mean().sqrt()
    loss = MultiScaleMelLoss(SR)
    values = [loss(clean + noise * 10 ** (-snr / 20), clean).item() for snr in (-5, 0, 5, 10, 20, 30, 40)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values


@pytest.mark.parametrize("name", list(_losses()))
def test_padding_content_is_ignored(name: str) -> None:
    loss = _losses()[name]
    target = _signal(2, 4000)
    pred = target + 0.05 * torch.randn_like(target)
    lengths = torch.tensor([4000, 2500])
    a = loss(pred, target, lengths)
    pred2, target2 = pred.clone(), target.clone()
    pred2[1, :, 2500:] = torch.randn(1, 1500)
    target2[1, :, 2500:] = 0.5
    assert loss(pred2, target2, lengths).item() == pytest.approx(a.item(), abs=1e-6)
    # and an item cut to its length alone gives its own loss
    single = loss(pred[1:, :, :2500], target[1:, :, :2500])
    pair_second_only = loss(pred[1:], target[1:], lengths[1:])
    assert pair_second_only.item() == pytest.approx(single.item(), rel=0.05)


def test_filterbanks_are_non_persistent_buffers() -> None:
    loss = MultiScaleMelLoss(SR, window_lengths=(64, 256), n_mels=(10, 40))
    buffers = dict(loss.named_buffers())
    assert buffers["mel_fb_0"].shape == (10, 33) and buffers["mel_fb_1"].shape == (40, 129)
    assert loss.state_dict() == {}
    np.testing.assert_allclose(buffers["mel_fb_1"].numpy(), librosa.filters.mel(sr=SR, n_fft=256, n_mels=40), atol=1e-6)


def test_accepts_promoted_shapes_and_rejects_bad_input() -> None:
    loss = MultiScaleMelLoss(SR, window_lengths=(64, 256), n_mels=(10, 40))
    x = _signal(2, 2000)
    assert loss(x[:, 0], x[:, 0] * 0.5).item() == pytest.approx(loss(x, x * 0.5).item())
    with pytest.raises(ValueError, match="same shape"):
        loss(x, x[..., :1000])
    with pytest.raises(ValueError, match="lengths"):
        loss(x, x, torch.tensor([2000, 3000]))
    with pytest.raises(ValueError, match="n_mels"):
        MultiScaleMelLoss(SR, window_lengths=(64, 256), n_mels=(10,))
    with pytest.raises(ValueError, match="hop"):
        MultiResolutionSTFTLoss((256,), (0,), (200,))


def test_shared_spectra_equal_results_and_gradients_with_one_stft_per_signal_and_size(monkeypatch) -> None:
    import voxtok.losses.spectral as S
    from voxtok.losses import shared_spectra

    torch.manual_seed(0)
    x = torch.randn(2, 1, 4000)
    y0 = torch.randn(2, 1, 4000)
    sizes = [256, 512]
    mel = MultiScaleMelLoss(16000, window_lengths=sizes, n_mels=[20, 40], mag_weight=1.0)
    mrstft = MultiResolutionSTFTLoss(sizes, [n // 4 for n in sizes], sizes)

    def both() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = y0.clone().requires_grad_(True)
        a, b = mel(y, x), mrstft(y, x)
        (a + 2 * b).backward()
        return a.detach(), b.detach(), y.grad

    calls = []
    real = S.stft
    monkeypatch.setattr(S, "stft", lambda *args, **kw: calls.append(args[1:]) or real(*args, **kw))
    apart = both()
    assert len(calls) == 8  # 2 losses x 2 sizes x 2 signals
    calls.clear()
    with shared_spectra():
        shared = both()
    assert len(calls) == 4  # each signal once per size
    torch.testing.assert_close(apart[:2], shared[:2], rtol=0, atol=0)
    # Gradients sum the two losses' contributions in another order: equal to rounding.
    torch.testing.assert_close(apart[2], shared[2], rtol=1e-5, atol=1e-7)
    calls.clear()
    both()  # the cache ends with the block
    assert len(calls) == 8


def test_shared_spectra_never_mixes_different_signals_or_sizes() -> None:
    from voxtok.losses import shared_spectra

    torch.manual_seed(1)
    x, y = torch.randn(1, 1, 3000), torch.randn(1, 1, 3000)
    mrstft = MultiResolutionSTFTLoss([256], [64], [256])
    other = MultiResolutionSTFTLoss([256], [128], [256])  # same n_fft, another hop
    with shared_spectra():
        got = (mrstft(y, x), mrstft(x, y), other(y, x))
        z = y.clone()
        mrstft(z, x)
        z.mul_(0.5)  # an in-place change to a signal after its spectrum was taken
        got_scaled = mrstft(z, x)
    torch.testing.assert_close(got[0], mrstft(y, x))
    torch.testing.assert_close(got[1], mrstft(x, y))
    torch.testing.assert_close(got[2], other(y, x))
    torch.testing.assert_close(got_scaled, mrstft(0.5 * y, x))
    assert not torch.equal(got[0], got[2])
