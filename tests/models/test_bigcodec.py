"""BigCodec / X-codec2 encoder parts: the anti-aliased SnakeBeta against its defining formula, frame counts, the
w2v-BERT filterbank against SeamlessM4T's numpy recipe, the fused encoder and X-codec2's double-bounded FSQ."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voxtok.codecs.parts import build_part
from voxtok.models.bigcodec import AntiAliasedActivation, BigCodecEncoder, SnakeBeta, kaiser_sinc_filter
from voxtok.models.xcodec2 import KaldiFbank, XCodec2Encoder

TINY_W2V_BERT = {"model_type": "wav2vec2-bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "intermediate_size": 32, "output_hidden_size": 16}  # fmt: skip


def _randomise(module: torch.nn.Module, scale: float = 0.5) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


# --------------------------------------------------------------------------------------------------------------
# anti-aliased activation


def _kaiser_reference(cutoff: float, half_width: float, k: int) -> torch.Tensor:
    """The Kaiser-sinc design written out with numpy's Kaiser window (float64)."""
    import numpy as np

    a = 2.285 * (k // 2 - 1) * math.pi * 4 * half_width + 7.95
    beta = 0.1102 * (a - 8.7) if a > 50 else (0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21) if a >= 21 else 0.0)
    t = np.arange(k) - k // 2 + (0.5 if k % 2 == 0 else 0.0)
    h = 2 * cutoff * np.kaiser(k, beta) * np.sinc(2 * cutoff * t)
    return torch.from_numpy(h / h.sum()).float()


@pytest.mark.parametrize("k", [12, 8, 7])
def test_kaiser_filter_is_a_unit_gain_low_pass(k: int) -> None:
    taps = kaiser_sinc_filter(0.25, 0.3, k)
    torch.testing.assert_close(taps, _kaiser_reference(0.25, 0.3, k), rtol=0, atol=1e-6)
    assert abs(taps.sum().item() - 1.0) < 1e-6
    torch.testing.assert_close(taps, taps.flip(0))  # linear phase


def _activation_formula(x: torch.Tensor, act: torch.nn.Module, taps: torch.Tensor) -> torch.Tensor:
    """Upsample x2 (replicate-pad k/2 - 1, zero-stuffing transposed convolution with 2 * taps, trim), act, then
    replicate-pad (k/2 - 1, k/2) and a stride-2 convolution with the taps: BigVGAN's Activation1d as written."""
    c, k = x.shape[1], taps.numel()
    w = taps.expand(c, 1, k)
    pad = k // 2 - 1
    up = 2 * F.conv_transpose1d(F.pad(x, (pad, pad), mode="replicate"), w, stride=2, groups=c)
    trim_left, trim_right = 2 * pad + (k - 2) // 2, 2 * pad + (k - 1) // 2
    up = up[..., trim_left : up.shape[-1] - trim_right]
    return F.conv1d(F.pad(act(up), (k // 2 - 1, k // 2), mode="replicate"), w, stride=2, groups=c)


@pytest.mark.parametrize("length", [1, 2, 5, 64])
def test_anti_aliased_activation_equals_the_formula(length: int) -> None:
    snake = SnakeBeta(6)
    _randomise(snake)
    aa = AntiAliasedActivation(snake)
    x = 3 * torch.randn(2, 6, length)
    with torch.no_grad():
        expected = _activation_formula(x, snake, aa.filter)
        torch.testing.assert_close(aa(x), expected, rtol=0, atol=1e-5)
        identity = AntiAliasedActivation(torch.nn.Identity())
        up = identity.upsample(x)
        assert up.shape == (2, 6, 2 * length)
        torch.testing.assert_close(identity.downsample(up), _activation_formula(x, torch.nn.Identity(), aa.filter),
                                   rtol=0, atol=1e-5)  # fmt: skip
    y = torch.randn(1, 6, 40, requires_grad=True)  # training: differentiable, same values
    out = aa(y)
    out.sum().backward()
    assert y.grad is not None and snake.alpha.grad is not None
    torch.testing.assert_close(out.detach(), _activation_formula(y.detach(), snake, aa.filter), rtol=0, atol=1e-5)


def test_anti_aliased_activation_equals_transformers() -> None:
    xc = pytest.importorskip("transformers.models.xcodec2.modeling_xcodec2")
    ref = xc.Xcodec2AntiAliasedActivation1d(xc.Xcodec2SnakeBeta(4))
    ours = AntiAliasedActivation(SnakeBeta(4))
    _randomise(ref)
    ours.act.load_state_dict(ref.act.state_dict())
    with torch.no_grad():  # transformers fills its filters in _init_weights; set them as that does
        for m in (ref.upsample, ref.downsample):
            m.filter.copy_(xc.kaiser_sinc_filter1d(0.25, 0.3, 12))
        torch.testing.assert_close(ours.filter, ref.upsample.filter.flatten(), rtol=0, atol=1e-7)
        x = torch.randn(2, 4, 33)
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_snake_beta_formula() -> None:
    snake = SnakeBeta(3)
    _randomise(snake)
    x = torch.randn(2, 3, 10)
    a, b = snake.alpha.exp()[:, None], snake.beta.exp()[:, None]
    expected = x + torch.sin(a * x) ** 2 / (b + 1e-9)
    with torch.no_grad():
        torch.testing.assert_close(snake(x), expected)
    torch.testing.assert_close(snake(x), expected)  # the autograd path too


# --------------------------------------------------------------------------------------------------------------
# BigCodec encoder: frames


@pytest.mark.parametrize("samples", [1, 19, 20, 21, 79, 80, 81, 200])
def test_bigcodec_frames_are_ceil(samples: int) -> None:
    enc = BigCodecEncoder(dimension=8, channels=2, ratios=[2, 5, 2]).eval()
    assert enc.hop_length == 20 and enc.dimension == 8 and enc.output_length(samples) == math.ceil(samples / 20)
    with torch.no_grad():
        z = enc(torch.randn(3, 1, samples))
    assert z.shape == (3, 8, math.ceil(samples / 20)) and torch.isfinite(z).all()


def test_bigcodec_equals_transformers_encoder() -> None:
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Xcodec2Config"):
        pytest.skip("this transformers has no X-codec2")
    from transformers.models.xcodec2.modeling_xcodec2 import Xcodec2Encoder

    cfg = transformers.Xcodec2Config(hidden_size=8, num_attention_heads=2, num_key_value_heads=2, head_dim=4,
                                     encoder_hidden_size=2, downsampling_ratios=(2, 3, 2),
                                     semantic_model_config=TINY_W2V_BERT)  # fmt: skip
    ref = Xcodec2Encoder(cfg).eval()
    _randomise(ref, 0.2)
    ours = BigCodecEncoder(dimension=8, channels=2, ratios=[2, 3, 2]).eval()
    from voxtok.codecs.convert.hf_xcodec2 import _source_name

    theirs = {k: v for k, v in ref.state_dict().items() if not k.endswith("filter")}
    mapped = {k: theirs.pop(_source_name(f"acoustic.{k}").removeprefix("acoustic_encoder.")) for k in ours.state_dict()}
    assert not theirs  # every transformers tensor has a place
    ours.load_state_dict(mapped)
    with torch.no_grad():
        from transformers.models.xcodec2.modeling_xcodec2 import kaiser_sinc_filter1d

        for name, buf in ref.named_buffers():
            if name.endswith("filter"):
                buf.copy_(kaiser_sinc_filter1d(0.25, 0.3, 12))
        x = torch.randn(2, 1, 12 * 9)
        expected = ref(x)
        assert expected.std() > 1e-2
        # float32, the same sums in another order: ~3e-6 of the output's scale apart
        assert (ours(x) - expected).abs().max() < 1e-5 * expected.abs().max()


# --------------------------------------------------------------------------------------------------------------
# filterbank


@pytest.fixture(scope="module")
def speech(data_dir):
    """``speech(16000, batch, samples)`` -> ``[batch, 1, samples]`` excerpts of a real recording at 16 kHz."""
    from voxtok import audio as A

    x, sr = A.read(data_dir / "2412-153948-0001.flac")
    y = A.to_mono(A.promote(A.resample(x, sr, 16000)))[0, 0].float()

    def get(sample_rate: int, batch: int, samples: int) -> torch.Tensor:
        assert sample_rate == 16000
        return torch.stack([y[8000 + i * samples // 2 :][:samples] for i in range(batch)])[:, None].contiguous()

    return get


def _seamless_features(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """SeamlessM4T's numpy Kaldi recipe (what X-codec2 was trained with) on waveforms already padded as
    X-codec2 pads them: whole frames of 320, then 160 zeros each side."""
    transformers = pytest.importorskip("transformers")
    fe = transformers.SeamlessM4TFeatureExtractor(padding_value=1.0)
    out = fe([F.pad(w, (160, 160)).numpy() for w in waves], sampling_rate=16000, return_tensors="pt")
    return out["input_features"], out["attention_mask"]


@pytest.mark.parametrize("samples", [320, 3200, 4000 - 33])
def test_fbank_matches_seamless_m4t(speech, samples: int) -> None:
    audio = speech(16000, 2, samples)
    fb = KaldiFbank()
    feats, mask = fb(audio)
    frames = math.ceil(samples / 320)
    assert feats.shape == (2, frames, 160) and mask.shape == (2, frames) and bool(mask.all())
    expected, _ = _seamless_features([F.pad(a[0], (0, frames * 320 - samples)) for a in audio])
    # float32 (here, as torchaudio's kaldi.fbank) against float64 numpy: measured ~7e-5 at most, on normalised
    # features of unit variance; a wrong window, mel scale or pre-emphasis moves them by > 1e-2.
    assert (feats - expected).abs().max() < 5e-4


def test_fbank_of_a_padded_batch(speech) -> None:
    audio = speech(16000, 2, 3000)
    audio[1, :, 1000:] = 0.0
    fb = KaldiFbank()
    feats, mask = fb(audio, lengths=torch.tensor([3000, 1000]))
    assert feats.shape == (2, 10, 160) and mask.tolist() == [[1] * 10, [1] * 4 + [0] * 6]
    assert bool((feats[1, 4:] == 1.0).all())  # transformers' padding value
    alone, _ = fb(audio[1:, :, :1000])
    torch.testing.assert_close(feats[1:, :4], alone)
    # each item over its own whole frames (3000 -> 3200 samples, 1000 -> 1280), zero-padded
    expected, expected_mask = _seamless_features([F.pad(audio[0, 0], (0, 200)), audio[1, 0, :1280]])
    assert (feats - expected).abs().max() < 5e-4 and torch.equal(mask, expected_mask.long())


def test_fbank_checks_rate_and_hop() -> None:
    with pytest.raises(ValueError, match="16 kHz"):
        KaldiFbank(sample_rate=24000)
    with pytest.raises(ValueError, match="hop_length must be 320"):
        KaldiFbank(hop_length=160)


# --------------------------------------------------------------------------------------------------------------
# the fused encoder and the quantizer


def _tiny_encoder() -> XCodec2Encoder:
    pytest.importorskip("transformers")
    return XCodec2Encoder(TINY_W2V_BERT, acoustic_dim=8, acoustic_channels=2, ratios=[4, 8, 10])


@pytest.mark.parametrize("samples", [1, 320, 321, 1000])
def test_xcodec2_encoder_shapes(samples: int) -> None:
    enc = _tiny_encoder().eval()
    assert enc.hop_length == 320 and enc.dimension == 16 + 8 and enc.output_length(samples) == math.ceil(samples / 320)
    with torch.no_grad():
        z = enc(torch.randn(2, 1, samples) * 0.1)
    assert z.shape == (2, 24, math.ceil(samples / 320)) and torch.isfinite(z).all()


def test_xcodec2_encoder_keeps_the_semantic_model_frozen() -> None:
    enc = _tiny_encoder().train()
    assert not enc.semantic.training and enc.acoustic.training
    assert not any(p.requires_grad for p in enc.semantic.parameters())
    enc(torch.randn(1, 1, 640) * 0.1).square().mean().backward()
    assert enc.acoustic.conv_in.conv.weight.grad is not None and enc.adapter.conv1.conv.weight.grad is not None


def test_xcodec2_encoder_builds_from_its_spec() -> None:
    pytest.importorskip("transformers")
    spec = {"class": "XCodec2Encoder", "args": {"semantic_model": TINY_W2V_BERT, "acoustic_dim": 8,
                                                "acoustic_channels": 2, "ratios": [4, 8, 10]}}  # fmt: skip
    enc = build_part(spec)
    assert isinstance(enc, XCodec2Encoder) and enc.dimension == 24
    with pytest.raises(ValueError, match="wav2vec2-bert"):
        XCodec2Encoder({"model_type": "hubert"}, acoustic_dim=8, acoustic_channels=2, ratios=[4, 8, 10])
    with pytest.raises(ValueError, match="hop_length must be 320"):
        XCodec2Encoder(TINY_W2V_BERT, acoustic_dim=8, acoustic_channels=2, ratios=[4, 8])

