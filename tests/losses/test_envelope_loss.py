"""The envelope-correlation loss: STOI's intermediate measure as a training loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pystoi import stoi

from voxtok.audio import read, resample
from voxtok.losses import EnvelopeCorrelationLoss, MultiScaleMelLoss, shared_spectra, third_octave_bands

SR = 16000


@pytest.fixture(scope="module")
def speech(data_dir) -> torch.Tensor:
    audio, sr = read(data_dir / "LJ001-0002.flac")
    return resample(audio[:1], sr, SR)[None]  # [1, 1, S], 1.9 s


def _noisy(clean: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    noise = noise / noise.pow(2).mean().sqrt() * clean.pow(2).mean().sqrt()
    return clean + noise * 10 ** (-snr_db / 20)


def test_third_octave_bands_follow_stoi() -> None:
    bands = third_octave_bands(SR, 512)
    assert bands.shape == (15, 257)
    assert (bands.sum(1) >= 1).all() and (bands.sum(0) <= 1).all()  # every band has a bin, no bin is in two
    freqs = torch.arange(257) * SR / 512
    centres = (bands * freqs).sum(1) / bands.sum(1)
    expected = 150 * 2 ** (torch.arange(15) / 3)
    assert torch.allclose(centres.float(), expected.float(), rtol=0.12), centres
    with pytest.raises(ValueError, match="Nyquist"):
        third_octave_bands(8000, 256)  # the 15th band reaches 4.3 kHz


def test_zero_for_identical_or_rescaled_speech_and_tracks_pystoi(speech: torch.Tensor) -> None:
    loss = EnvelopeCorrelationLoss(SR)
    assert loss(speech, speech).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(0.2 * speech, speech).item() == pytest.approx(0.0, abs=1e-5)  # the level does not count
    ours, reference = [], []
    for snr in (-10, -5, 0, 5, 10, 20):
        noisy = _noisy(speech, snr)
        ours.append(1.0 - loss(noisy, speech).item())
        reference.append(stoi(speech[0, 0].numpy(), noisy[0, 0].numpy(), SR))
    assert all(a < b for a, b in zip(ours, ours[1:], strict=False)), ours
    assert np.corrcoef(ours, reference)[0, 1] > 0.97, (ours, reference)
    assert np.abs(np.array(ours) - np.array(reference)).max() < 0.15, (ours, reference)


def test_finite_gradients_on_silence_and_padding_ignored(speech: torch.Tensor) -> None:
    loss = EnvelopeCorrelationLoss(SR)
    silence = torch.zeros(1, 1, SR)
    for target in (silence, speech[..., :SR]):
        pred = torch.zeros(1, 1, SR, requires_grad=True)
        value = loss(pred, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(pred.grad).all()
    target = torch.cat([speech[..., :SR], speech[..., SR // 2 : SR // 2 + SR]])  # two items, the second cut at 0.75 s
    pred = _noisy(target, 5)
    lengths = torch.tensor([SR, 3 * SR // 4])
    a = loss(pred, target, lengths)
    pred2, target2 = pred.clone(), target.clone()
    pred2[1, :, 3 * SR // 4:] = torch.randn(SR // 4)
    target2[1, :, 3 * SR // 4:] = 0.5
    assert loss(pred2, target2, lengths).item() == pytest.approx(a.item(), abs=1e-6)


def test_refuses_audio_shorter_than_a_segment_and_shares_spectra(speech: torch.Tensor) -> None:
    loss = EnvelopeCorrelationLoss(SR)
    with pytest.raises(ValueError, match="at least 48 STFT frames"):
        loss(speech[..., :4000], speech[..., :4000])
    with pytest.raises(ValueError, match="hop_length"):
        EnvelopeCorrelationLoss(SR, n_fft=512, hop_length=0)
    mel = MultiScaleMelLoss(SR, window_lengths=(512,), n_mels=(40,))
    noisy = _noisy(speech, 5)
    alone = loss(noisy, speech)
    with shared_spectra():
        mel(noisy, speech)
        assert loss(noisy, speech).item() == pytest.approx(alone.item(), abs=1e-7)
