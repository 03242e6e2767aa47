"""Causal Transformer and the CAT encoder / decoder: causality, context window, streaming == offline, shapes,
errors, and numerical equality with transformers' Mimi transformer under the documented weight mapping."""

from __future__ import annotations

import pytest
import torch

from voxtok.models.transformer import (
    CATDecoder,
    CATEncoder,
    CausalTransformer,
    patchify,
    unpatchify,
)


def tiny(**overrides) -> CausalTransformer:
    return CausalTransformer.named("tiny", **overrides).eval()


def stream(module, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Feed ``x`` [B, D, T] through ``module`` in chunks of the given sizes (along the last axis)."""
    outs = []
    with module.streaming(x.shape[0]):
        start = 0
        for size in sizes:
            outs.append(module(x[..., start : start + size]))
            start += size
        assert start == x.shape[-1]
    return torch.cat(outs, dim=-1)


def random_sizes(total: int, gen: torch.Generator, unit: int = 1, max_units: int = 5) -> list[int]:
    sizes = []
    while total > 0:
        size = unit * int(torch.randint(1, max_units + 1, (1,), generator=gen))
        size = min(size, total)
        sizes.append(size)
        total -= size
    return sizes


# ----------------------------------------------------------------------------------------------------------
# CausalTransformer


def test_shapes_and_projections() -> None:
    t = tiny(input_dim=12, output_dim=6)
    y = t(torch.randn(3, 12, 17))
    assert y.shape == (3, 6, 17)
    assert t.output_length(17) == 17
    assert tiny()(torch.randn(2, 32, 5)).shape == (2, 32, 5)
    assert tiny().input_proj is None and tiny().output_proj is None


@pytest.mark.parametrize("context", [None, 4])
@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
def test_causal(context: int | None, norm: str) -> None:
    t = tiny(context=context, norm=norm)
    x = torch.randn(2, 32, 20)
    x2 = x.clone()
    x2[..., 11:] = torch.randn(2, 32, 9)
    with torch.no_grad():
        y, y2 = t(x), t(x2)
    torch.testing.assert_close(y[..., :11], y2[..., :11], rtol=0, atol=1e-6)
    assert (y[..., 11:] - y2[..., 11:]).abs().max() > 1e-3  # the change does reach later frames


def test_context_window_limits_attention() -> None:
    # One layer with context 4: frame t sees frames t-3..t only, so frame 0 cannot reach frames >= 4.
    t = tiny(num_layers=1, context=4)
    x = torch.randn(1, 32, 12)
    x2 = x.clone()
    x2[..., 0] = torch.randn(32)
    with torch.no_grad():
        y, y2 = t(x), t(x2)
    assert (y[..., 1:4] - y2[..., 1:4]).abs().max() > 1e-4
    torch.testing.assert_close(y[..., 4:], y2[..., 4:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("context", [None, 1, 3, 8])
def test_streaming_equals_offline(context: int | None) -> None:
    t = tiny(context=context, input_dim=10, output_dim=7)
    x = torch.randn(2, 10, 29)
    with torch.no_grad():
        offline = t(x)
        gen = torch.Generator().manual_seed(1)
        for sizes in ([1] * 29, [29], random_sizes(29, gen), random_sizes(29, gen, max_units=9)):
            torch.testing.assert_close(stream(t, x, sizes), offline, rtol=0, atol=1e-5)


def test_streaming_cache_is_trimmed_to_context() -> None:
    t = tiny(context=5)
    with torch.no_grad(), t.streaming(1):
        for _ in range(4):
            t(torch.randn(1, 32, 3))
        state = t.streaming_state
        assert state.offset == 12
        assert all(k.shape[2] == 4 and v.shape[2] == 4 for k, v in state.kv)
    assert t.streaming_state is None  # leaving the context drops the state


def test_streaming_restarts_clean() -> None:
    t = tiny()
    x = torch.randn(1, 32, 6)
    with torch.no_grad():
        first = stream(t, x, [2, 4])
        second = stream(t, x, [3, 3])
    torch.testing.assert_close(first, second, rtol=0, atol=1e-5)


def test_gradients_flow() -> None:
    t = CausalTransformer.named("tiny", input_dim=5, output_dim=3)
    x = torch.randn(2, 5, 9, requires_grad=True)
    t(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in t.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_input() -> None:
    t = tiny()
    with pytest.raises(ValueError, match=r"\[B, D, T\]"):
        t(torch.randn(32, 5))
    with pytest.raises(ValueError, match="32 input channels; got 31"):
        t(torch.randn(1, 31, 5))
    with t.streaming(2), pytest.raises(ValueError, match="batch size 2; got 1"):
        t(torch.randn(1, 32, 5))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        CausalTransformer(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="norm must be one of"):
        CausalTransformer(norm="batch_norm")
    with pytest.raises(ValueError, match="unknown CausalTransformer configuration 'huge'"):
        CausalTransformer.named("huge")


def test_mimi_configuration_matches_transformers_size() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mimi.modeling_mimi import MimiTransformerModel

    ours = CausalTransformer.named("mimi")
    assert (ours.context, len(ours.layers), ours.d_model, ours.num_heads) == (250, 8, 512, 8)
    theirs = MimiTransformerModel(transformers.MimiConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)


def test_loads_transformers_mimi_weights() -> None:
    """Mapping ``MimiTransformerModel``'s weights by name (q/k rows reordered for adjacent-pair RoPE) gives the
    same outputs, sliding window included."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.mimi.modeling_mimi import MimiTransformerModel

    d, heads, hd = 32, 4, 8
    config = transformers.MimiConfig(
        hidden_size=d,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        num_hidden_layers=2,
        intermediate_size=64,
        sliding_window=5,
        layer_scale_initial_scale=0.3,
    )
    config._attn_implementation = "eager"
    theirs = MimiTransformerModel(config).eval()
    ours = CausalTransformer(d_model=d, num_heads=heads, num_layers=2, dim_feedforward=64, context=5).eval()

    def pairs(w: torch.Tensor) -> torch.Tensor:  # rotate-half row order -> adjacent-pair row order
        return w.view(heads, 2, hd // 2, d).transpose(1, 2).reshape(heads * hd, d)

    state = {}
    for i, layer in enumerate(theirs.layers):
        a = layer.self_attn
        state |= {
            f"layers.{i}.norm1.weight": layer.input_layernorm.weight,
            f"layers.{i}.norm1.bias": layer.input_layernorm.bias,
            f"layers.{i}.self_attn.in_proj.weight": torch.cat(
                (pairs(a.q_proj.weight), pairs(a.k_proj.weight), a.v_proj.weight)
            ),
            f"layers.{i}.self_attn.out_proj.weight": a.o_proj.weight,
            f"layers.{i}.layer_scale_1.scale": layer.self_attn_layer_scale.scale,
            f"layers.{i}.norm2.weight": layer.post_attention_layernorm.weight,
            f"layers.{i}.norm2.bias": layer.post_attention_layernorm.bias,
            f"layers.{i}.mlp.fc1.weight": layer.mlp.fc1.weight,
            f"layers.{i}.mlp.fc2.weight": layer.mlp.fc2.weight,
            f"layers.{i}.layer_scale_2.scale": layer.mlp_layer_scale.scale,
        }
    ours.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    x = torch.randn(2, 12, d)  # 12 frames > the 5-frame window
    with torch.no_grad():
        expected = theirs(x, use_cache=False).last_hidden_state
        got = ours(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# CAT encoder / decoder


def test_patchify_order_and_inverse() -> None:
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 12, 3)
    # channel d * p + j of frame t holds sample t * p + j of channel d (MOSS-Audio-Tokenizer's order)
    assert p[1, 2 * 4 + 3, 2] == x[1, 2, 2 * 4 + 3]
    torch.testing.assert_close(unpatchify(p, 4), x, rtol=0, atol=0)


def test_cat_named_configurations() -> None:
    # num_layers=0 keeps only the projections, so the full-size layouts build instantly.
    for name in ("moss", "small"):
        enc = CATEncoder.named(name, num_layers=0)
        dec = CATDecoder.named(name, num_layers=0)
        assert enc.hop_length == dec.hop_length == 1920  # 12.5 Hz at 24 kHz
        assert len(enc.stages) == len(dec.stages) == 4
        assert [s.context for s in enc.stages] == [1000, 500, 250, 125]
        assert [s.context for s in dec.stages] == [125, 250, 500, 1000]
        assert enc.dimension == dec.dimension
        z = enc(torch.randn(1, 1, 3840))
        assert z.shape == (1, enc.dimension, 2)
        assert dec(z).shape == (1, 1, 3840)
    moss = CATEncoder.named("moss", num_layers=0)
    assert [s.input_dim for s in moss.stages] == [240, 768, 768, 1280]
    assert [s.d_model for s in moss.stages] == [768, 768, 768, 1280]
    with pytest.raises(ValueError, match="unknown CATEncoder configuration"):
        CATEncoder.named("huge")


def test_cat_lengths_over_random_lengths() -> None:
    enc, dec = CATEncoder.named("tiny").eval(), CATDecoder.named("tiny").eval()
    assert enc.hop_length == dec.hop_length == 16
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for s in [1, 15, 16, 17, 48] + torch.randint(1, 200, (5,), generator=gen).tolist():
            z = enc(torch.randn(2, 1, s))
            assert z.shape == (2, 8, -(-s // 16)) and z.shape[-1] == enc.output_length(s)
            for t in (0, 1, z.shape[-1]):
                assert dec(z[..., :t]).shape == (2, 1, t * 16) and dec.output_length(t) == t * 16


def test_cat_causal() -> None:
    enc, dec = CATEncoder.named("tiny").eval(), CATDecoder.named("tiny").eval()
    x = torch.randn(1, 1, 160)
    x2 = x.clone()
    x2[..., 64:] = torch.randn(96)
    z = torch.randn(1, 8, 10)
    z2 = z.clone()
    z2[..., 4:] = torch.randn(8, 6)
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[..., :4], enc(x2)[..., :4], rtol=0, atol=1e-6)
        torch.testing.assert_close(dec(z)[..., :64], dec(z2)[..., :64], rtol=0, atol=1e-6)
        assert (enc(x)[..., 4:] - enc(x2)[..., 4:]).abs().max() > 1e-4


@pytest.mark.parametrize("context", [None, 8, 2])
def test_cat_streaming_equals_offline(context: int | None) -> None:
    enc = CATEncoder.named("tiny", context=context, layer_scale=0.5).eval()
    dec = CATDecoder.named("tiny", context=context, layer_scale=0.5).eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 16 * 13)
    z = torch.randn(2, 8, 13)
    with torch.no_grad():
        enc_offline, dec_offline = enc(x), dec(z)
        for _ in range(3):
            sizes = random_sizes(13, gen, max_units=4)
            torch.testing.assert_close(stream(enc, x, [16 * s for s in sizes]), enc_offline, rtol=0, atol=1e-5)
            torch.testing.assert_close(stream(dec, z, sizes), dec_offline, rtol=0, atol=1e-5)


def test_cat_bad_input() -> None:
    enc, dec = CATEncoder.named("tiny"), CATDecoder.named("tiny")
    with enc.streaming(1), pytest.raises(ValueError, match="multiple of 16 samples; got 24"):
        enc(torch.randn(1, 1, 24))
    with pytest.raises(ValueError, match=r"\[B, C, S\]"):
        enc(torch.randn(1, 48))
    with pytest.raises(ValueError, match="1 audio channel"):
        enc(torch.randn(1, 2, 48))
    with pytest.raises(ValueError, match="8 latent channels; got 4"):
        dec(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match=r"\[B, D, T\]"):
        dec(torch.randn(8, 3))
    with pytest.raises(ValueError, match="must be even"):
        CATDecoder(stage_dims=[15])
    with pytest.raises(ValueError, match="one entry per stage"):
        CATEncoder(stage_dims=[8], d_model=[16, 16, 16])


def test_cat_gradients_flow() -> None:
    enc, dec = CATEncoder.named("tiny"), CATDecoder.named("tiny")
    x = torch.randn(2, 1, 64)
    dec(enc(x)).square().mean().backward()
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
