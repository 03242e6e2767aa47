"""hf-xcodec2 (decode-only): a random transformers Xcodec2Model (reduced config) converts to voxtok; the same
codes decode to the same audio within 1e-4, and encoding says why it is unavailable."""

from __future__ import annotations

import pytest
import torch

from voxtok.codecs.convert import convert

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Xcodec2Config"):
    pytest.skip("this transformers has no X-codec2", allow_module_level=True)

HOP = 16


def _reference(tmp_path):
    from transformers import Xcodec2Config, Xcodec2Model

    semantic = {"model_type": "wav2vec2-bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 32, "output_hidden_size": 16}  # fmt: skip
    cfg = Xcodec2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        head_dim=8, encoder_hidden_size=4, downsampling_ratios=(4, 4), semantic_model_config=semantic,
        quantization_dim=48,  # = hidden_size + the semantic model's width, as 1024 + 1024 = 2048 in X-codec2
    )  # fmt: skip
    ref = Xcodec2Model(cfg).eval()
    with torch.no_grad():  # move every weight off its init (zero biases, unit norms) so a misplaced one shows
        for p in ref.acoustic_decoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "hf")
    return ref


def test_decode_matches_transformers(tmp_path):
    ref = _reference(tmp_path)
    codec = convert("hf-xcodec2", tmp_path / "hf")
    assert codec.name == "xcodec2-50hz" and codec.hop_length == HOP and codec.codebook_size == 4**8
    codes = torch.randint(0, 4**8, (3, 1, 20))
    with torch.no_grad():
        expected = ref.decode(audio_codes=codes).audio_values
    audio = codec.decode(codes)
    assert audio.shape == expected.shape == (3, 1, 20 * HOP)
    # float32; the iSTFT is the same overlap-add in another order: ~1e-6 apart; 1e-4 is margin.
    assert (audio - expected).abs().max() < 1e-4
    assert expected.abs().max() > 1e-3  # not a silent comparison
    for i in range(3):  # batched == alone
        assert (codec.decode(codes[i : i + 1]) - expected[i : i + 1]).abs().max() < 1e-4


def test_grid_matches_transformers_fsq(tmp_path):
    """Index -> grid values -> project_out: voxtok's FSQ decode equals X-codec2's ``from_codes``."""
    ref = _reference(tmp_path)
    codec = convert("hf-xcodec2", tmp_path / "hf")
    idx = torch.arange(0, 4**8, 97)[None, None]
    with torch.no_grad():
        theirs = ref.quantizer.from_codes(idx.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(codec.quantizer.decode(idx), theirs, rtol=0, atol=1e-6)


def test_encode_explains_it_is_decode_only(tmp_path):
    _reference(tmp_path)
    codec = convert("hf-xcodec2", tmp_path / "hf")
    with pytest.raises(ValueError, match="decode-only"):
        codec.encode(torch.randn(1, 1, 4 * HOP))
    # and the saved directory keeps the decode path
    from voxtok import Codec

    codec.save_pretrained(tmp_path / "vx")
    again = Codec.from_pretrained(tmp_path / "vx")
    codes = torch.randint(0, 4**8, (1, 1, 5))
    assert torch.equal(again.decode(codes), codec.decode(codes))
