"""Discriminators: logits / feature shapes, gradients, conditioning, reference framing, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from voxtok.models.discriminators import (
    MultiBandDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleSTFTDiscriminator,
)

S = 700  # samples: above every tiny discriminator's minimum, not a multiple of any period or hop


def test_multi_period_shapes():
    d = MultiPeriodDiscriminator.tiny()
    logits, features = d(torch.randn(2, 1, S))
    assert len(logits) == len(features) == 5
    for p, lg, fm in zip((2, 3, 5, 7, 11), logits, features, strict=True):
        assert len(fm) == 5
        rows = math.ceil(S / p)
        for i, f in enumerate(fm):
            assert f.shape[:2] == (2, (4, 8, 16, 16, 16)[i]) and f.shape[-1] == p
            if i < 4:
                rows = (rows - 1) // 3 + 1  # kernel 5, stride 3, padding 2
            assert f.shape[2] == rows
        assert lg.shape == (2, 1, rows, p)


def test_multi_resolution_shapes():
    d = MultiResolutionDiscriminator.tiny()
    logits, features = d(torch.randn(2, 1, S))
    assert len(logits) == len(features) == 3
    for (n_fft, hop, _), lg, fm in zip(d.resolutions, logits, features, strict=True):
        f, t = n_fft // 2 + 1, S // hop + 1
        for (sf, st), fmap in zip([(2, 2), (2, 1), (2, 2), (2, 1), (2, 2)], fm, strict=True):
            f, t = (f - 1) // sf + 1, (t - 1) // st + 1
            assert fmap.shape == (2, 4, f, t)
        assert lg.shape == (2, 1, f, t)


def test_multi_scale_stft_shapes():
    d = MultiScaleSTFTDiscriminator.tiny()
    logits, features = d(torch.randn(2, 1, S))
    assert len(logits) == len(features) == 3
    for n_fft, hop, lg, fm in zip((128, 256, 64), (32, 64, 16), logits, features, strict=True):
        frames, bins = (S - n_fft) // hop + 1, n_fft // 2 + 1
        assert len(fm) == 5
        assert fm[0].shape == (2, 4, frames, bins)
        for i in (1, 2, 3):
            bins = (bins - 1) // 2 + 1
            assert fm[i].shape == (2, 4, frames, bins)
        assert fm[4].shape == lg.shape[:1] + (4,) + lg.shape[2:]
        assert lg.shape == (2, 1, frames, bins)


def test_multi_band_shapes_and_band_split():
    d = MultiBandDiscriminator.tiny()
    logits, features = d(torch.randn(2, 1, S))
    assert len(logits) == len(features) == 3
    for w, sub, lg, fm in zip((256, 128, 64), d.discriminators, logits, features, strict=True):
        frames = math.ceil(S / (w // 4))
        assert sub.spectrogram(torch.randn(2, 1, S)).shape == (2, 2, frames, w // 2 + 1)
        assert len(fm) == 5 * 5  # five conv layers per band, five bands
        widths = []
        for lo, hi in sub.bands:
            n = hi - lo
            for _ in range(3):
                n = (n - 1) // 2 + 1
            widths.append(n)
        assert lg.shape == (2, 1, frames, sum(widths))


def test_multi_band_spectrogram_frames_follow_the_hop():
    """DAC's match_stride framing: frame k of the spectrogram is centred on sample k * hop + hop / 2."""
    sub = MultiBandDiscriminator.tiny().discriminators[0]
    hop, n = sub.hop_length, 1280
    x = torch.zeros(1, 1, n)
    k = 7
    x[..., k * hop + hop // 2] = 1.0
    energy = sub.spectrogram(x).square().sum(dim=(1, 3))[0]
    assert int(energy.argmax()) == k


@pytest.mark.parametrize(
    "make",
    [MultiPeriodDiscriminator.tiny, MultiResolutionDiscriminator.tiny, MultiScaleSTFTDiscriminator.tiny,
     MultiBandDiscriminator.tiny],
)  # fmt: skip
def test_gradients_flow_to_input_and_every_parameter(make):
    d = make()
    x = torch.randn(2, 1, S, requires_grad=True)
    logits, features = d(x)
    loss = sum(lg.square().mean() for lg in logits) + sum(f.abs().mean() for fm in features for f in fm)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    "make",
    [MultiPeriodDiscriminator.tiny, MultiResolutionDiscriminator.tiny, MultiScaleSTFTDiscriminator.tiny,
     MultiBandDiscriminator.tiny],
)  # fmt: skip
def test_bad_input_raises(make):
    d = make()
    with pytest.raises(ValueError, match=r"mono audio \[B, 1, S\]"):
        d(torch.randn(2, 2, S))
    too_short = d.min_length - 1
    with pytest.raises(ValueError, match=f"at least {d.min_length} samples"):
        d(torch.randn(2, 1, too_short))
    d(torch.randn(1, 1, d.min_length))  # the minimum itself works
    d(torch.randn(2, S))  # [B, S] is promoted


def test_default_sizes_construct():
    counts = {
        cls.__name__: sum(p.numel() for p in cls().parameters())
        for cls in (MultiPeriodDiscriminator, MultiResolutionDiscriminator, MultiScaleSTFTDiscriminator,
                    MultiBandDiscriminator)
    }  # fmt: skip
    # HiFi-GAN's MPD is ~41M parameters; the STFT discriminators are far smaller.
    assert 40e6 < counts["MultiPeriodDiscriminator"] < 42e6
    assert all(0 < n < 5e6 for k, n in counts.items() if k != "MultiPeriodDiscriminator"), counts


def test_conditioning_starts_neutral_and_then_matters():
    d = MultiResolutionDiscriminator.tiny(num_embeddings=4)
    x = torch.randn(2, 1, S)
    plain, _ = d(x)
    cond = torch.tensor([1, 3])
    with torch.no_grad():
        same, _ = d(x, cond)
        for lg_a, lg_b in zip(plain, same, strict=True):
            torch.testing.assert_close(lg_a, lg_b)
        for sub in d.discriminators:
            sub.emb.weight.normal_()
        moved, _ = d(x, cond)
    assert not torch.allclose(moved[0], plain[0])


# ---------------------------------------------------------------------------------------------------------------
# Values against the published recipes, written out here with torch.stft and F.conv2d on the modules' weights:
# HiFi-GAN's period discriminator, Vocos / WavTokenizer's resolution discriminator, EnCodec's STFT discriminator
# and DAC's multi-band discriminator (strides, paddings, windows, framing and activation slopes as published).


def _conv(conv: torch.nn.Module, x: torch.Tensor, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> torch.Tensor:
    return torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride, padding, dilation)


def _lrelu(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.where(x >= 0, x, slope * x)


def _hifigan_period(sub, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    p, t = sub.period, x.shape[-1]
    if t % p:
        x = torch.nn.functional.pad(x, (0, p - t % p), mode="reflect")
    h = x.reshape(x.shape[0], 1, -1, p)
    feats = []
    for i, conv in enumerate(sub.convs):
        h = _lrelu(_conv(conv, h, (3 if i < len(sub.convs) - 1 else 1, 1), (2, 0)), 0.1)
        feats.append(h)
    return _conv(sub.conv_post, h, padding=(1, 0)), feats


def _vocos_resolution(sub, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    n_fft, hop, win = sub.n_fft, sub.hop_length, sub.win_length
    spec = torch.stft(x[:, 0], n_fft, hop, win, window=None, center=True, return_complex=True).abs()[:, None]
    layout = [((2, 2), (3, 2)), ((2, 1), (2, 1)), ((2, 2), (2, 1)), ((2, 1), (1, 1)), ((2, 2), (1, 1))]
    feats = []
    for conv, (stride, pad) in zip(sub.convs, layout, strict=True):
        spec = _lrelu(_conv(conv, spec, stride, pad), 0.1)
        feats.append(spec)
    return _conv(sub.conv_post, spec, padding=(1, 1)), feats


def _encodec_stft(sub, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    window = torch.hann_window(sub.win_length, periodic=True)
    z = torch.stft(x[:, 0], sub.n_fft, sub.hop_length, sub.win_length, window=window, center=False,
                   return_complex=True) / window.square().sum().sqrt()  # torchaudio's normalized=True  # fmt: skip
    z = torch.stack([z.real, z.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
    feats = []
    specs = [((1, 1), (1, 4), (1, 1))] + [((1, 2), (d, 4), (d, 1)) for d in (1, 2, 4)] + [((1, 1), (1, 1), (1, 1))]
    for conv, (stride, pad, dil) in zip(sub.convs, specs, strict=True):
        z = _lrelu(_conv(conv, z, stride, pad, dil), 0.2)
        feats.append(z)
    return _conv(sub.conv_post, z, padding=(1, 1)), feats


def _dac_bands(sub, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    win = sub.window_length
    hop = win // 4
    n = x.shape[-1]
    right, pad = math.ceil(n / hop) * hop - n, (win - hop) // 2  # audiotools' match_stride framing
    y = torch.nn.functional.pad(x[:, 0], (pad, pad + right), mode="reflect")
    spec = torch.stft(y, win, hop, window=torch.hann_window(win, periodic=True), center=True, return_complex=True)
    spec = torch.view_as_real(spec[..., 2:-2]).permute(0, 3, 2, 1)  # [B, 2, frames, bins]
    n_bins = win // 2 + 1
    feats, outs = [], []
    for (lo, hi), convs in zip(((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)), sub.band_convs,
                               strict=True):  # fmt: skip
        band = spec[..., int(lo * n_bins) : int(hi * n_bins)]
        for i, conv in enumerate(convs):
            stride, padding = ((1, 2), (1, 4)) if 1 <= i <= 3 else ((1, 1), (1, 4) if i == 0 else (1, 1))
            band = _lrelu(_conv(conv, band, stride, padding), 0.1)
            feats.append(band)
        outs.append(band)
    return _conv(sub.conv_post, torch.cat(outs, dim=-1), padding=(1, 1)), feats


@pytest.mark.parametrize(
    ("make", "reference", "prepare"),
    [
        (MultiPeriodDiscriminator.tiny, _hifigan_period, None),
        (MultiResolutionDiscriminator.tiny, _vocos_resolution, None),
        (MultiScaleSTFTDiscriminator.tiny, _encodec_stft, None),
        (MultiBandDiscriminator.tiny, _dac_bands, "dac"),
    ],
)
def test_values_follow_the_published_recipe(make, reference, prepare) -> None:
    torch.manual_seed(0)
    d = make()
    with torch.no_grad():  # non-zero biases, so a layer that dropped its bias would show too
        for m in d.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0.0, 0.1)
    x = 0.3 * torch.randn(2, 1, S)
    with torch.no_grad():
        logits, features = d(x)
        if prepare == "dac":  # DAC's preprocessing: remove the mean, peak at 0.8
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        for sub, lg, fm in zip(d.discriminators, logits, features, strict=True):
            want_lg, want_fm = reference(sub, x)
            torch.testing.assert_close(lg, want_lg, rtol=1e-4, atol=1e-5)
            assert len(fm) == len(want_fm)
            for f, w in zip(fm, want_fm, strict=True):
                torch.testing.assert_close(f, w, rtol=1e-4, atol=1e-5)
            assert lg.abs().max() > 1e-3  # not a comparison of zeros
