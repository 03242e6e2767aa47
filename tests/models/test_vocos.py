"""Vocos decoder and its iSTFT head: exact output lengths, STFT round trip with "same" padding, conditioning,
gradients, errors."""

from __future__ import annotations

import pytest
import torch

from voxtok.models.vocos import ISTFTHead, VocosDecoder, VocosTransformerDecoder, istft_same, stft_same


def tiny(**overrides) -> VocosDecoder:
    return VocosDecoder.named("tiny", **overrides).eval()


@pytest.mark.parametrize(("n_fft", "hop"), [(64, 16), (1280, 320), (2400, 600), (60, 15)])
def test_istft_inverts_same_padded_stft(n_fft: int, hop: int) -> None:
    frames = 9
    x = torch.randn(2, frames * hop, dtype=torch.float64)
    spec = stft_same(x, n_fft, hop)
    assert spec.shape == (2, n_fft // 2 + 1, frames)  # one frame per hop
    y = istft_same(spec, n_fft, hop)
    assert y.shape == x.shape
    interior = slice(hop, -hop)
    torch.testing.assert_close(y[:, interior], x[:, interior], rtol=0, atol=1e-5)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-5)  # the "same" edges too: the envelope never vanishes


def test_istft_inverts_in_float32() -> None:
    x = torch.randn(1, 16 * 20)
    torch.testing.assert_close(istft_same(stft_same(x, 64, 16), 64, 16), x, rtol=0, atol=1e-5)


def test_istft_head_builds_the_spectrum_it_is_told() -> None:
    # Drive the head's linear layer to output a known log-magnitude / phase: the audio must be the iSTFT of it.
    head = ISTFTHead(dim=4, n_fft=64, hop_length=16)
    x = torch.randn(1, 4, 7)
    with torch.no_grad():
        out = head.out(x.transpose(1, 2)).transpose(1, 2)
        logmag, phase = out.chunk(2, dim=1)
        spec = torch.polar(logmag.exp().clamp(max=1e2), phase)
        torch.testing.assert_close(head(x)[:, 0], istft_same(spec, 64, 16), rtol=1e-5, atol=1e-6)
        # magnitudes are clipped at 1e2
        head.out.bias.fill_(50.0)
        assert head(x).abs().max() < 1e2 * 33 * 2


def test_decoder_output_length_over_random_lengths() -> None:
    dec = tiny()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in [0, 1, 2, 3] + torch.randint(4, 60, (5,), generator=gen).tolist():
            y = dec(torch.randn(2, 8, t))
            assert y.shape == (2, 1, t * 16) and dec.output_length(t) == t * 16
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("attention", [True, False])
def test_named_configurations(attention: bool) -> None:
    sizes = {"wavtokenizer-75hz": (320, 1280), "wavtokenizer-40hz": (600, 2400), "xcodec2": (320, 1280)}
    for name, (hop, n_fft) in sizes.items():
        # num_layers=0 keeps the check cheap; the hop, n_fft and widths come from the configuration.
        dec = VocosDecoder.named(name, num_layers=0, attention=attention)
        assert (dec.hop_length, dec.n_fft) == (hop, n_fft)
        assert dec(torch.randn(1, dec.dimension, 3)).shape == (1, 1, 3 * hop)
    with pytest.raises(ValueError, match="unknown VocosDecoder configuration"):
        VocosDecoder.named("huge")


def test_wavtokenizer_parameter_names() -> None:
    names = set(dict(VocosDecoder.named("tiny").named_parameters()))
    for expected in (
        "backbone.embed.weight",
        "backbone.pos_net.0.norm1.weight",
        "backbone.pos_net.2.q.weight",
        "backbone.pos_net.2.proj_out.bias",
        "backbone.pos_net.5.weight",
        "backbone.norm.scale.weight",
        "backbone.convnext.1.dwconv.weight",
        "backbone.convnext.1.norm.shift.weight",
        "backbone.convnext.1.pwconv2.weight",
        "backbone.convnext.1.gamma",
        "backbone.final_layer_norm.weight",
        "head.out.weight",
    ):
        assert expected in names, expected


def test_condition_changes_output_and_is_checked() -> None:
    dec = tiny()
    with torch.no_grad():
        dec.backbone.norm.scale.weight[1].fill_(3.0)  # make id 1 differ from id 0
        z = torch.randn(2, 8, 5)
        base = dec(z)
        torch.testing.assert_close(dec(z, 0), base)
        torch.testing.assert_close(dec(z, torch.tensor([0, 0])), base)
        mixed = dec(z, torch.tensor([0, 1]))
        torch.testing.assert_close(mixed[0], base[0])
        assert (mixed[1] - base[1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"condition ids must be in \[0, 2\)"):
        dec(z, 2)
    with pytest.raises(ValueError, match=r"\[B\] = \[2\] ids"):
        dec(z, torch.tensor([0, 1, 1]))


def test_batch_items_are_independent() -> None:
    dec = tiny()
    z = torch.randn(3, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(dec(z)[1:2], dec(z[1:2]), rtol=1e-5, atol=1e-6)


def test_gradients_flow() -> None:
    dec = VocosDecoder.named("tiny", dropout=0.0)
    z = torch.randn(2, 8, 6, requires_grad=True)
    dec(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, p in dec.named_parameters():
        if name.startswith("backbone.norm.") or ".norm.scale" in name or ".norm.shift" in name:
            # embedding rows of unused condition ids get no gradient; the used row must
            assert p.grad is not None and p.grad[0].abs().sum() > 0, name
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_input() -> None:
    dec = tiny()
    with pytest.raises(ValueError, match=r"\[B, D, T\]"):
        dec(torch.randn(8, 5))
    with pytest.raises(ValueError, match="8 latent channels; got 7"):
        dec(torch.randn(1, 7, 5))
    with dec.streaming(1), pytest.raises(RuntimeError, match="cannot stream"):
        dec(torch.randn(1, 8, 5))
    with pytest.raises(ValueError, match="multiple of 32"):
        VocosDecoder(dim=40)
    with pytest.raises(ValueError, match="hop_length must be"):
        ISTFTHead(dim=8, n_fft=64, hop_length=40)
    with pytest.raises(ValueError, match="33 frequency bins"):
        istft_same(torch.zeros(1, 30, 4, dtype=torch.complex64), 64, 16)
    with pytest.raises(ValueError, match=r"\[B, S\]"):
        stft_same(torch.zeros(1, 1, 64), 64, 16)


def test_loads_transformers_wavtokenizer_decoder_weights() -> None:
    """transformers' ``WavTokenizerModel`` backbone + head load into ``VocosDecoder`` by name (its ``head.linear`` is
    the original checkpoint's ``head.out``) and give the same audio."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "WavTokenizerModel"):
        pytest.skip("this transformers has no WavTokenizerModel")
    config = transformers.WavTokenizerConfig(
        num_filters=4,
        upsampling_ratios=(4, 4),
        num_lstm_layers=1,
        hidden_size=8,
        codebook_dim=8,
        codebook_size=16,
        decoder_hidden_size=32,
        decoder_intermediate_size=48,
        decoder_num_layers=2,
    )
    theirs = transformers.WavTokenizerModel(config).eval()
    with torch.no_grad():
        for p in [*theirs.backbone.parameters(), *theirs.head.parameters()]:
            p.add_(0.1 * torch.randn_like(p))  # move off the initial values (ones, zeros, 1 / layers)
    ours = VocosDecoder(dimension=8, dim=32, intermediate_dim=48, num_layers=2, n_fft=64, hop_length=16).eval()
    state = {f"backbone.{k}": v for k, v in theirs.backbone.state_dict().items()}
    state |= {k.replace("head.linear.", "head.out."): v for k, v in theirs.head.state_dict(prefix="head.").items()}
    ours.load_state_dict(state, strict=True)
    z = torch.randn(2, 8, 11)
    with torch.no_grad():
        expected = theirs.head(theirs.backbone(z, torch.tensor([1])))
        got = ours(z, 1)
    assert got.shape == expected.shape == (2, 1, 11 * 16)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# X-codec2's Transformer-backbone variant


def test_transformer_decoder_lengths_and_errors() -> None:
    dec = VocosTransformerDecoder.named("tiny").eval()
    with torch.no_grad():
        for t in (0, 1, 5, 23):
            assert dec(torch.randn(2, 16, t)).shape == (2, 1, t * 16) and dec.output_length(t) == t * 16
    with pytest.raises(ValueError, match="16 latent channels; got 8"):
        dec(torch.randn(1, 8, 4))
    with dec.streaming(1), pytest.raises(RuntimeError, match="cannot stream"):
        dec(torch.randn(1, 16, 4))
    full = VocosTransformerDecoder.named("xcodec2", num_layers=0)
    assert (full.hop_length, full.n_fft, full.dimension) == (320, 1280, 2048)


def test_transformer_decoder_gradients_flow() -> None:
    dec = VocosTransformerDecoder.named("tiny", dropout=0.0)
    z = torch.randn(2, 16, 6, requires_grad=True)
    dec(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loads_transformers_xcodec2_decoder_weights() -> None:
    """transformers' ``Xcodec2Decoder`` (RoPE over the head axis included) loads by name into
    ``VocosTransformerDecoder`` and gives the same audio."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Xcodec2Config"):
        pytest.skip("this transformers has no X-codec2")
    from transformers.models.xcodec2.modeling_xcodec2 import Xcodec2Decoder

    config = transformers.Xcodec2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=8,
        downsampling_ratios=(4, 4),
        semantic_model_config={"model_type": "wav2vec2-bert", "hidden_size": 16},
    )
    config._attn_implementation = "eager"
    theirs = Xcodec2Decoder(config).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = VocosTransformerDecoder(dimension=48, dim=32, num_heads=4, intermediate_dim=64, num_layers=2, n_fft=64,
                                   hop_length=16).eval()  # fmt: skip
    state = {}
    for name, value in theirs.state_dict().items():
        name = name.replace("input_layernorm", "norm1").replace("post_attention_layernorm", "norm2")
        name = name.replace("self_attn.o_proj", "self_attn.out_proj").replace("head.linear", "head.out")
        if ".self_attn.q_proj." in name:
            prefix = name.split(".self_attn.")[0]
            qkv = [theirs.state_dict()[f"{prefix}.self_attn.{p}_proj.weight"] for p in "qkv"]
            state[f"{prefix}.self_attn.in_proj.weight"] = torch.cat(qkv)
        elif ".self_attn.k_proj." not in name and ".self_attn.v_proj." not in name:
            state[name] = value
    ours.load_state_dict(state, strict=True)
    z = torch.randn(2, 48, 9)
    with torch.no_grad():
        expected = theirs(z.transpose(1, 2))
        got = ours(z)
    assert got.shape == expected.shape == (2, 1, 9 * 16)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
