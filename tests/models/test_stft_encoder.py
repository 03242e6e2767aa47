"""STFT-frame encoder: lengths, the features it reads, batch independence, gradients, errors, named sizes."""

from __future__ import annotations

import math

import pytest
import torch

from voxtok.models.stft_encoder import STFTEncoder
from voxtok.models.vocos import stft_same


def tiny(**overrides) -> STFTEncoder:
    return STFTEncoder.named("tiny", **overrides).eval()


@pytest.mark.parametrize(("stft_hop", "stride"), [(8, 2), (8, 1), (5, 3)])
def test_output_length_is_ceil_over_random_lengths(stft_hop: int, stride: int) -> None:
    enc = tiny(stft_hop=stft_hop, stride=stride)
    hop = stft_hop * stride
    assert enc.hop_length == hop
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 2, hop - 1, hop, hop + 1, 3 * hop] + torch.randint(4, 400, (6,), generator=gen).tolist()
    with torch.no_grad():
        for n in lengths:
            z = enc(torch.randn(2, 1, n))
            assert z.shape == (2, 8, math.ceil(n / hop)) == (2, 8, enc.output_length(n)), n
            assert torch.isfinite(z).all()


def test_full_size_runs_at_50_hz() -> None:
    enc = STFTEncoder.named("stft-50hz", frame_layers=0, latent_layers=0).eval()
    assert enc.hop_length == 320 and (enc.n_fft, enc.stft_hop) == (640, 160)
    with torch.no_grad():
        assert enc(torch.randn(1, 16000) * 0.1).shape == (1, 20, 50)  # [B, S] promoted


def test_features_are_log_magnitudes_of_the_same_padded_stft() -> None:
    enc = tiny()
    x = torch.randn(2, 1, 64)
    feats = enc.features(x)
    ref = stft_same(x[:, 0], 32, 8).abs().clamp(min=1e-5).log()
    assert feats.shape == (2, 17, 8)
    torch.testing.assert_close(feats, ref)
    # A sine at bin 4 of a 32-point FFT (fs / 8) peaks there in every frame away from the edges.
    t = torch.arange(256, dtype=torch.float32)
    sine = torch.sin(2 * math.pi * t * 4 / 32)[None, None]
    assert (enc.features(sine)[0, :, 2:-2].argmax(0) == 4).all()
    # silence stays finite: the floor
    assert (enc.features(torch.zeros(1, 1, 64)) == math.log(1e-5)).all()


@pytest.mark.parametrize(("embed_kernel", "lookahead"), [(7, 8), (1, 6)])
def test_batch_items_are_independent_and_padding_reaches_only_the_last_frames(embed_kernel, lookahead) -> None:
    enc = tiny(embed_kernel=embed_kernel)
    hop = enc.hop_length
    a, b = torch.randn(1, 1, 20 * hop), torch.randn(1, 1, 20 * hop)
    with torch.no_grad():
        both = enc(torch.cat([a, b]))
        torch.testing.assert_close(both[1:], enc(b), rtol=1e-5, atol=1e-5)
        # An item padded with zeros inside a longer batch: frames whose window and convolutions stay inside the
        # item are unchanged; only the last `lookahead_frames` can see the padding.
        short = a[..., : 12 * hop]
        padded = torch.cat([short, torch.zeros(1, 1, 8 * hop)], dim=-1)
        diff = (enc(padded)[..., :12] - enc(short)).abs().amax(dim=1)[0]
    assert enc.lookahead_frames == lookahead
    assert (diff[: -enc.lookahead_frames] < 1e-6).all(), diff
    assert diff[-1] > 1e-5  # the padding is visible at the very end (the check above could fail)


def test_gradients_reach_every_parameter() -> None:
    enc = STFTEncoder.named("tiny")
    enc(torch.randn(2, 1, 200)).square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bf16_autocast_keeps_the_stft_in_float32() -> None:
    enc = tiny()
    x = torch.randn(2, 1, 160) * 0.1
    ref = enc(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        z = enc(x)
    assert z.shape == ref.shape and torch.isfinite(z.float()).all()
    assert (z.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_bad_input_and_arguments() -> None:
    enc = tiny()
    with pytest.raises(ValueError, match=r"mono audio \[B, 1, S\]; got shape \(1, 2, 50\)"):
        enc(torch.randn(1, 2, 50))
    with pytest.raises(ValueError, match="empty"):
        enc(torch.zeros(1, 1, 0))
    with enc.streaming(1), pytest.raises(RuntimeError, match="cannot stream"):
        enc(torch.randn(1, 1, 32))
    with pytest.raises(ValueError, match="stride must be a positive int; got 0"):
        STFTEncoder(stride=0)
    with pytest.raises(ValueError, match="embed_kernel must be a positive odd int; got 4"):
        STFTEncoder(embed_kernel=4)
    with pytest.raises(ValueError, match="stft_hop must be <= n_fft"):
        STFTEncoder(n_fft=64, stft_hop=128)
    with pytest.raises(ValueError, match="mono"):
        STFTEncoder(channels=2)
    with pytest.raises(ValueError, match="unknown STFTEncoder configuration 'huge'"):
        STFTEncoder.named("huge")
