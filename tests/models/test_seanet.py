"""SEANet encoder / decoder: length contracts, causality, streaming == offline, bad input, and layer-for-layer
agreement with transformers' EnCodec, Mimi and DAC implementations (tiny configs, random weights)."""

from __future__ import annotations

import math

import pytest
import torch

from voxtok.models.seanet import DECODER_CONFIGS, ENCODER_CONFIGS, SEANetDecoder, SEANetEncoder

TINY = ["tiny", "tiny-causal", "tiny-snake"]
LENGTHS = [1, 5, 6, 7, 12, 13, 37, 60, 61]  # hop is 6: multiples, non-multiples, shorter than a hop


@pytest.mark.parametrize("name", TINY)
def test_encoder_frames_are_ceil_samples_over_hop(name):
    enc = SEANetEncoder.named(name)
    assert enc.hop_length == 6
    lengths = LENGTHS + torch.randint(1, 200, (5,)).tolist()
    for s in lengths:
        z = enc(torch.randn(2, 1, s))
        assert z.shape == (2, enc.dimension, math.ceil(s / enc.hop_length)), s
        assert enc.output_length(s) == z.shape[-1]


@pytest.mark.parametrize("name", TINY)
def test_decoder_samples_are_frames_times_hop(name):
    dec = SEANetDecoder.named(name)
    for t in [1, 2, 3, 10] + torch.randint(1, 40, (3,)).tolist():
        y = dec(torch.randn(2, dec.dimension, t))
        assert y.shape == (2, 1, t * dec.hop_length)
        assert dec.output_length(t) == y.shape[-1]


def test_encoder_accepts_unbatched_audio():
    enc = SEANetEncoder.named("tiny")
    x = torch.randn(25)
    torch.testing.assert_close(enc(x), enc(x[None, None]))
    torch.testing.assert_close(enc(x[None]), enc(x[None, None]))


def test_causal_encoder_and_decoder_never_see_the_future():
    enc = SEANetEncoder.named("tiny-causal")
    dec = SEANetDecoder.named("tiny-causal")
    hop = enc.hop_length
    x = torch.randn(1, 1, 90)
    t = 41
    x2 = x.clone()
    x2[..., t:] += torch.randn_like(x2[..., t:])
    with torch.no_grad():
        z, z2 = enc(x), enc(x2)
        done = t // hop  # frames whose samples all precede t
        torch.testing.assert_close(z[..., :done], z2[..., :done], rtol=0, atol=0)
        assert not torch.allclose(z[..., done:], z2[..., done:])
        f = 7
        w = torch.randn(1, dec.dimension, 12)
        w2 = w.clone()
        w2[..., f:] += 1.0
        y, y2 = dec(w), dec(w2)
        torch.testing.assert_close(y[..., : f * hop], y2[..., : f * hop], rtol=0, atol=0)
        assert not torch.allclose(y[..., f * hop :], y2[..., f * hop :])


@pytest.mark.parametrize("sizes", [[1], [4], [5, 2], [6], [7], [13, 1, 3], [50]])
def test_streaming_encoder_matches_offline(sizes):
    enc = SEANetEncoder.named("tiny-causal")
    x = torch.randn(2, 1, 67)  # not a multiple of the hop: the last partial frame stays buffered
    outs, pos, i = [], 0, 0
    with torch.no_grad():
        offline = enc(x)
        with enc.streaming(2):
            while pos < x.shape[-1]:
                n = sizes[i % len(sizes)]
                outs.append(enc(x[..., pos : pos + n]))
                pos, i = pos + n, i + 1
    streamed = torch.cat(outs, dim=-1)
    whole = x.shape[-1] // enc.hop_length
    assert streamed.shape[-1] == whole
    torch.testing.assert_close(streamed, offline[..., :whole], rtol=0, atol=1e-5)


@pytest.mark.parametrize("sizes", [[1], [2], [3, 1], [5]])
def test_streaming_decoder_matches_offline(sizes):
    dec = SEANetDecoder.named("tiny-causal")
    z = torch.randn(2, dec.dimension, 11)
    outs, pos, i = [], 0, 0
    with torch.no_grad():
        offline = dec(z)
        with dec.streaming(2):
            while pos < z.shape[-1]:
                n = sizes[i % len(sizes)]
                outs.append(dec(z[..., pos : pos + n]))
                pos, i = pos + n, i + 1
    torch.testing.assert_close(torch.cat(outs, dim=-1), offline, rtol=0, atol=1e-5)


def test_streaming_state_is_dropped_on_exit():
    enc = SEANetEncoder.named("tiny-causal")
    x = torch.randn(1, 1, 30)
    with torch.no_grad():
        with enc.streaming(1):
            first = enc(x)
        with enc.streaming(1):
            second = enc(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_non_causal_encoder_refuses_to_stream():
    enc = SEANetEncoder.named("tiny")
    with pytest.raises(ValueError, match="non-causal"), enc.streaming(1):
        pass


def test_bad_input_raises():
    enc = SEANetEncoder.named("tiny")
    dec = SEANetDecoder.named("tiny")
    with pytest.raises(ValueError, match="1 channel"):
        enc(torch.randn(2, 2, 30))
    with pytest.raises(ValueError, match="at least 1 sample"):
        enc(torch.randn(2, 1, 0))
    with pytest.raises(ValueError, match=r"\[B, 8, T\]"):
        dec(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="unknown SEANet configuration"):
        SEANetEncoder.named("encodec-48khz")
    with pytest.raises(ValueError, match="activation"):
        SEANetEncoder(activation="relu")


def test_remove_weight_norm_keeps_outputs():
    enc = SEANetEncoder.named("tiny-snake")
    x = torch.randn(2, 1, 50)
    with torch.no_grad():
        before = enc(x)
        enc.remove_weight_norm()
        after = enc(x)
    assert not any("parametrizations" in k for k in enc.state_dict())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_gradients_reach_every_parameter():
    enc = SEANetEncoder.named("tiny-snake")
    dec = SEANetDecoder.named("tiny-snake")
    dec(enc(torch.randn(2, 1, 40))).square().mean().backward()
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_named_configurations_have_the_reference_hops():
    hops = {
        "encodec-24khz": 320, "dac-16khz": 320, "dac-24khz": 320, "dac-44khz": 512, "mimi": 960,
        "wavtokenizer-75hz": 320, "wavtokenizer-40hz": 600, "dmcodec": 320,
    }  # fmt: skip
    for name, hop in hops.items():
        assert math.prod(ENCODER_CONFIGS[name]["ratios"]) == hop, name
        assert DECODER_CONFIGS[name]["ratios"] == ENCODER_CONFIGS[name]["ratios"][::-1], name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENCODER_CONFIGS))
def test_named_configurations_build_and_run(name):
    enc = SEANetEncoder.named(name)
    dec = SEANetDecoder.named(name)
    with torch.inference_mode():
        z = enc(torch.randn(1, 1, 2 * enc.hop_length + 3))
        assert z.shape == (1, enc.dimension, 3)
        assert dec(z).shape == (1, 1, 3 * dec.hop_length)


# -- agreement with transformers (random weights, tiny configs, no download) --------------------------------------


def test_matches_transformers_encodec():
    from transformers import EncodecConfig, EncodecModel

    cfg = EncodecConfig(
        num_filters=4, hidden_size=8, upsampling_ratios=[3, 2], num_lstm_layers=1, codebook_size=16, codebook_dim=8
    )
    ref = EncodecModel(cfg).eval()
    common = dict(n_filters=4, dimension=8, lstm_layers=1)
    enc = SEANetEncoder.named("encodec-24khz", ratios=[2, 3], **common).eval()
    dec = SEANetDecoder.named("encodec-24khz", ratios=[3, 2], **common).eval()
    enc.load_state_dict(ref.encoder.state_dict())
    dec.load_state_dict(ref.decoder.state_dict())
    x = torch.randn(2, 1, 53)
    with torch.no_grad():
        z = ref.encoder(x)
        torch.testing.assert_close(enc(x), z, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(dec(z), ref.decoder(z), rtol=1e-5, atol=1e-6)


def test_matches_transformers_mimi_seanet():
    from transformers import MimiConfig
    from transformers.models.mimi.modeling_mimi import MimiDecoder, MimiEncoder

    cfg = MimiConfig(num_filters=4, hidden_size=8, upsampling_ratios=[3, 2])
    ref_enc, ref_dec = MimiEncoder(cfg).eval(), MimiDecoder(cfg).eval()
    enc = SEANetEncoder.named("mimi", ratios=[2, 3], n_filters=4, dimension=8).eval()
    dec = SEANetDecoder.named("mimi", ratios=[3, 2], n_filters=4, dimension=8).eval()
    enc.load_state_dict(ref_enc.state_dict())
    dec.load_state_dict(ref_dec.state_dict())
    x = torch.randn(2, 1, 60)
    with torch.no_grad():
        z = ref_enc(x)
        torch.testing.assert_close(enc(x), z, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(dec(z), ref_dec(z), rtol=1e-5, atol=1e-6)


def _dac_to_voxtok(state: dict[str, torch.Tensor], n_blocks: int, decoder: bool) -> dict[str, torch.Tensor]:
    """Rename transformers' DAC encoder / decoder keys to the flat SEANet layout (test-only mapping)."""
    out = {}
    last = 1 + 5 * n_blocks
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "conv1":
            new = ["layers", "0", "conv", *parts[1:]]
        elif parts[0] == "snake1":
            new = ["layers", str(last), *parts[1:]]
        elif parts[0] == "conv2":
            new = ["layers", str(last + 1), "conv", *parts[1:]]
        else:  # block.{i}.<sub>...
            base = 1 + 5 * int(parts[1])
            sub = parts[2]
            if sub.startswith("res_unit"):
                unit = int(sub[-1]) - 1
                pos = base + (2 + unit if decoder else unit)
                inner = {"snake1": "0", "conv1": "1", "snake2": "2", "conv2": "3"}[parts[3]]
                tail = ["conv", *parts[4:]] if inner in ("1", "3") else parts[4:]
                new = ["layers", str(pos), "block", inner, *tail]
            elif sub == "snake1":
                new = ["layers", str(base if decoder else base + 3), *parts[3:]]
            else:  # conv1 (encoder, strided) or conv_t1 (decoder)
                new = ["layers", str(base + 4 if not decoder else base + 1), "conv", *parts[3:]]
        out[".".join(new)] = value
    return out


@pytest.mark.parametrize("ratios", [[2, 4], [2, 3]])
def test_matches_transformers_dac(ratios):
    from transformers import DacConfig, DacModel

    cfg = DacConfig(
        encoder_hidden_size=4, downsampling_ratios=ratios, decoder_hidden_size=16,
        upsampling_ratios=ratios[::-1], hidden_size=16, codebook_size=8, codebook_dim=4, n_codebooks=1,
    )  # fmt: skip
    ref = DacModel(cfg).eval()
    enc = SEANetEncoder.named("dac-44khz", ratios=ratios, n_filters=4, dimension=16, norm="none").eval()
    dec = SEANetDecoder.named("dac-44khz", ratios=ratios[::-1], n_filters=4, dimension=16, norm="none").eval()
    with torch.no_grad():  # random Snake alphas so that a swapped activation would show
        for m in (*ref.encoder.modules(), *ref.decoder.modules()):
            if hasattr(m, "alpha"):
                m.alpha.uniform_(0.5, 2.0)
    enc.load_state_dict(_dac_to_voxtok(ref.encoder.state_dict(), len(ratios), decoder=False))
    dec.load_state_dict(_dac_to_voxtok(ref.decoder.state_dict(), len(ratios), decoder=True))
    hop = math.prod(ratios)
    frames = 40
    x = torch.randn(2, 1, frames * hop)
    with torch.no_grad():
        z = ref.encoder(x)
        torch.testing.assert_close(enc(x), z, rtol=1e-5, atol=1e-5)
        y_ref, y = ref.decoder(z), dec(z)
    assert y.shape[-1] == frames * hop
    if all(r % 2 == 0 for r in ratios):
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    else:
        # DAC's odd-stride transposed conv drops the last sample (5T - 1); ours keeps T * stride. The
        # shared samples agree away from the end, where the extra sample enters the following convolutions.
        assert y_ref.shape[-1] < y.shape[-1]
        n = y_ref.shape[-1] - 160  # the residual units' dilated kernels reach ~130 samples back
        assert n > 60
        torch.testing.assert_close(y[..., :n], y_ref[..., :n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_inference_path_matches_autograd_path_and_leaves_inputs_alone(name):
    """Without autograd the layers overwrite their own temporaries; results and the caller's tensors must not
    change."""
    enc, dec = SEANetEncoder.named(name), SEANetDecoder.named(name)
    x = torch.randn(2, 1, 47)
    x_copy = x.clone()
    z_grad = enc(x)
    y_grad = dec(z_grad)
    with torch.inference_mode():
        z = enc(x)
        z_copy = z.clone()
        y = dec(z)
    torch.testing.assert_close(z, z_grad.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y, y_grad.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(x, x_copy) and torch.equal(z, z_copy)


def test_causal_batch_items_match_items_encoded_alone():
    """Right padding in a batch never reaches an item's frames in a causal stack (DESIGN: batching is
    invisible)."""
    enc = SEANetEncoder.named("tiny-causal")
    a, b = torch.randn(1, 1, 41), torch.randn(1, 1, 60)
    batch = torch.cat([torch.nn.functional.pad(a, (0, 19)), b])
    with torch.inference_mode():
        z = enc(batch)
        za = enc(a)
        zb = enc(b)
    whole = 41 // enc.hop_length  # frames of `a` that hold only its own samples
    torch.testing.assert_close(z[:1, :, :whole], za[..., :whole], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(z[1:], zb, rtol=1e-6, atol=1e-6)
