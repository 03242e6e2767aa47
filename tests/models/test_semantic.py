from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxtok.models.seanet import SEANetEncoder
from voxtok.models.semantic import ConcatEncoder, HFAudioEncoder

TINY_HUBERT = {
    "model_type": "hubert", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 32, "conv_dim": [8, 8], "conv_stride": [4, 2], "conv_kernel": [8, 4],
    "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2,
}  # fmt: skip


@pytest.mark.parametrize("n", [1, 7, 8, 9, 100, 333])
def test_frames_line_up_with_the_codec(n: int) -> None:
    enc = HFAudioEncoder(TINY_HUBERT, layer=1).eval()
    assert enc.hop_length == 8 and enc.dimension == 16
    h = enc(torch.randn(2, 1, n))
    assert h.shape == (2, 16, -(-n // 8)) and torch.isfinite(h).all()


def test_frozen_model_gets_no_gradient_and_stays_in_eval() -> None:
    enc = HFAudioEncoder(TINY_HUBERT).train()
    assert not enc.model.training
    assert all(not p.requires_grad for p in enc.parameters())
    trainable = HFAudioEncoder(TINY_HUBERT, freeze=False).train()
    x = torch.randn(1, 1, 64)
    trainable(x).sum().backward()
    assert any(p.grad is not None for p in trainable.parameters())


def test_loads_a_local_directory(tmp_path: Path) -> None:
    enc = HFAudioEncoder(TINY_HUBERT).eval()
    enc.model.save_pretrained(tmp_path / "hubert")
    again = HFAudioEncoder(str(tmp_path / "hubert")).eval()
    x = torch.randn(1, 1, 80)
    torch.testing.assert_close(again(x), enc(x))
    with pytest.raises(ValueError, match="pass a directory written by transformers' save_pretrained"):
        HFAudioEncoder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="needs 'model_type'"):
        HFAudioEncoder({"hidden_size": 16})
    with pytest.raises(ValueError, match="layer must be in"):
        HFAudioEncoder(TINY_HUBERT, layer=7)


def test_concat_encoder_fuses_and_checks_hops() -> None:
    acoustic = SEANetEncoder.named("tiny", ratios=[2, 4], lstm_layers=0)
    fused = ConcatEncoder([acoustic, HFAudioEncoder(TINY_HUBERT)], dimension=12).eval()
    assert fused.hop_length == 8 and fused.dimension == 12
    assert fused(torch.randn(2, 1, 50)).shape == (2, 12, 7)
    with pytest.raises(ValueError, match="share one hop_length"):
        ConcatEncoder([SEANetEncoder.named("tiny"), HFAudioEncoder(TINY_HUBERT)], dimension=4)


@pytest.mark.parametrize("layer", [0, 1, -1, -2])
def test_returns_the_hidden_state_asked_for(layer: int) -> None:
    # transformers' own hidden states, called directly: entry `layer` of hidden_states, lined up with the codec's
    # frames. Neighbouring entries differ, so a layer off by one is visible.
    enc = HFAudioEncoder(TINY_HUBERT, layer=layer).eval()
    x = torch.randn(2, 1, 336)
    with torch.no_grad():
        states = enc.model(input_values=x[:, 0], output_hidden_states=True).hidden_states
    assert len(states) == 3
    want = torch.nn.functional.interpolate(states[layer].transpose(1, 2), size=42, mode="linear", align_corners=False)
    torch.testing.assert_close(enc(x), want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(states[layer], states[layer - 1], atol=1e-3)
