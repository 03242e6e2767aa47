from __future__ import annotations

import pytest
import torch

from voxtok.models.chain import DecoderChain, EncoderChain, FrameDownsample, FrameUpsample
from voxtok.models.transformer import CausalTransformer


def _tiny_transformer(dim: int = 16) -> CausalTransformer:
    return CausalTransformer(d_model=dim, num_heads=2, num_layers=1, dim_feedforward=32, context=6, layer_scale=0.1)


def test_frame_rate_changes_lengths() -> None:
    down, up = FrameDownsample(8, stride=2), FrameUpsample(8, stride=2)
    for t in (1, 2, 5, 8):
        z = torch.randn(2, 8, t)
        assert down(z).shape == (2, 8, -(-t // 2)) == (2, 8, down.output_length(t))
        assert up(z).shape == (2, 8, 2 * t) == (2, 8, up.output_length(t))


def test_chain_hop_dims_and_streaming() -> None:
    enc = EncoderChain([_tiny_transformer(), FrameDownsample(16, 2)]).eval()
    dec = DecoderChain([FrameUpsample(16, 2), _tiny_transformer()]).eval()
    assert enc.hop_length == 2 and enc.dimension == 16 and dec.dimension == 16 and dec.hop_length == 2
    x = torch.randn(2, 16, 12)
    with torch.no_grad():
        offline = enc(x)
        assert offline.shape == (2, 16, 6) and enc.output_length(12) == 6
        with enc.streaming(2):
            streamed = torch.cat([enc(x[..., i : i + 4]) for i in range(0, 12, 4)], dim=-1)
        torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-5)
        y = dec(offline)
        assert y.shape == (2, 16, 12)
        with dec.streaming(2):
            ys = torch.cat([dec(offline[..., i : i + 2]) for i in range(0, 6, 2)], dim=-1)
        torch.testing.assert_close(ys, y, atol=1e-5, rtol=1e-5)


def test_chain_checks_widths() -> None:
    with pytest.raises(ValueError, match="stage widths must fit"):
        EncoderChain([_tiny_transformer(16), FrameDownsample(8, 2)])
    with pytest.raises(ValueError, match="at least one stage"):
        DecoderChain([])
