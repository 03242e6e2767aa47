"""The xcodec2-50hz preset is X-codec2's published architecture, exactly as the hf-xcodec2 converter builds it
from transformers' Xcodec2Config defaults; its tiny variant has the same parts; chunked encoding passes lengths;
directories saved from the earlier (SEANet + HuBERT) preset keep loading."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

import voxtok
from voxtok.codecs import Codec, build, preset_config
from voxtok.codecs.parts import part_class

# config.json of a directory saved from the earlier xcodec2-50hz-tiny preset (SEANet + HuBERT, plain FSQ).
OLD_TINY_CONFIG = {
    "format_version": 1, "voxtok_version": "0.1.0", "name": "xcodec2-50hz-tiny", "sample_rate": 16000,
    "channels": 1, "causal": False, "chunk_seconds": 60.0, "context_seconds": 2.0,
    "encoder": {"class": "ConcatEncoder", "args": {"dimension": 16, "encoders": [
        {"class": "SEANetEncoder", "args": {
            "channels": 1, "dimension": 8, "n_filters": 4, "n_residual_layers": 1, "residual_kernel_size": 3,
            "dilation_base": 2, "kernel_size": 7, "last_kernel_size": 3, "activation": "elu", "compress": 2,
            "lstm_layers": 0, "ratios": [2, 4], "causal": False, "pad_mode": "reflect", "norm": "weight_norm"}},
        {"class": "HFAudioEncoder", "args": {"layer": -1, "model": {
            "model_type": "hubert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "conv_dim": [8, 8], "conv_stride": [4, 2], "conv_kernel": [8, 4],
            "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2}}}]}},
    "quantizer": {"class": "FiniteScalarQuantizer", "args": {"dim": 16, "levels": [4, 4]}},
    "decoder": {"class": "VocosTransformerDecoder", "args": {
        "dimension": 16, "dim": 64, "num_heads": 4, "intermediate_dim": 96, "num_layers": 2, "n_fft": 32,
        "hop_length": 8}},
}  # fmt: skip

_BOOKKEEPING = {"transformers_version", "_name_or_path", "architectures", "dtype", "model_type"}


def _full_args(spec: dict) -> dict:
    """A part spec's constructor arguments with the defaults it leaves out filled in."""
    sig = inspect.signature(part_class(spec["class"]).__init__)
    defaults = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **spec["args"]}


def _w2v_bert(config: dict) -> dict:
    from transformers import Wav2Vec2BertConfig

    d = Wav2Vec2BertConfig(**{k: v for k, v in config.items() if k not in _BOOKKEEPING}).to_dict()
    return {k: v for k, v in d.items() if k not in _BOOKKEEPING}


def test_preset_is_the_converted_layout() -> None:
    from transformers import Xcodec2Config

    from voxtok.codecs.convert.hf_xcodec2 import config_from_hf

    preset, converted = preset_config("xcodec2-50hz"), config_from_hf(Xcodec2Config().to_dict(), "defaults")
    for key in ("sample_rate", "channels", "causal"):
        assert preset[key] == converted[key], key
    for part in ("encoder", "quantizer", "decoder"):
        assert preset[part]["class"] == converted[part]["class"], part
        mine, theirs = _full_args(preset[part]), _full_args(converted[part])
        if part == "encoder":
            assert _w2v_bert(mine.pop("semantic_model")) == _w2v_bert(theirs.pop("semantic_model"))
            mine["ratios"], theirs["ratios"] = list(mine["ratios"]), list(theirs["ratios"])
        assert mine == theirs, part


def test_preset_has_the_parameter_count_of_transformers_xcodec2() -> None:
    # Both built on the meta device (no memory): 629,281,706 parameters each.
    import transformers

    with torch.device("meta"):
        ours = Codec.from_config(preset_config("xcodec2-50hz"))
        theirs = transformers.Xcodec2Model(transformers.Xcodec2Config())
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    assert n_ours == n_theirs == 629_281_706
    assert sum(p.numel() for p in ours.encoder.semantic.parameters()) == sum(
        p.numel() for p in theirs.semantic_encoder.parameters()
    )


def test_tiny_preset_has_the_same_parts_small() -> None:
    full, tiny = preset_config("xcodec2-50hz"), preset_config("xcodec2-50hz-tiny")
    assert [tiny[p]["class"] for p in ("encoder", "quantizer", "decoder")] == [
        full[p]["class"] for p in ("encoder", "quantizer", "decoder")
    ] == ["XCodec2Encoder", "FiniteScalarQuantizer", "VocosTransformerDecoder"]
    assert tiny["encoder"]["args"]["semantic_model"]["model_type"] == "wav2vec2-bert"
    c = build("xcodec2-50hz-tiny")
    assert c.hop_length == 320 and c.frame_rate == 50.0 and c.codebook_size == 16
    assert sum(p.numel() for p in c.parameters()) < 1_000_000


def test_chunked_batch_keeps_each_items_lengths() -> None:
    # One long item (chunked in 20-frame windows with 4 frames of context) and a short one inside the first
    # window. With each window's lengths passed, the short item's filterbank statistics cover its own samples,
    # so its latents and codes equal the unchunked path's; the long item's equal its chunked encoding alone.
    torch.manual_seed(0)
    whole = build("xcodec2-50hz-tiny").eval()
    with torch.no_grad():  # random latents are small: scale the code projection so that the codes vary
        whole.quantizer.project_in.weight.mul_(40.0)
    chunked = build("xcodec2-50hz-tiny").eval()
    chunked.load_state_dict(whole.state_dict())
    hop = whole.hop_length
    chunked.chunk_seconds, chunked.context_seconds = 20 * hop / 16000, 4 * hop / 16000
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(2, 1, 70 * hop)
    x[0] = 0.1 * torch.randn(1, 70 * hop, generator=g)
    x[1, :, : 6 * hop - 17] = 0.1 * torch.randn(1, 6 * hop - 17, generator=g)
    lengths = torch.tensor([70 * hop, 6 * hop - 17])
    ref = whole.encode_latents(x, lengths)[1, :, :6]
    torch.testing.assert_close(chunked.encode_latents(x, lengths)[1, :, :6], ref, rtol=0, atol=1e-5)
    tok = chunked.encode(x, lengths)
    assert len(tok.codes[0].unique()) >= 4 and len(tok.codes[1, :, :6].unique()) >= 2  # codes that can differ
    assert torch.equal(tok.codes[1, :, :6], whole.encode(x, lengths).codes[1, :, :6])
    assert torch.equal(tok.codes[0], chunked.encode(x[:1]).codes[0])
    assert not torch.equal(tok.codes[0], whole.encode(x[:1]).codes[0])  # the long item really was chunked


def test_directory_saved_from_the_earlier_preset_still_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = Codec.from_config(OLD_TINY_CONFIG).eval()
    x = 0.1 * torch.randn(2, 1, 1000, generator=torch.Generator().manual_seed(2))
    codes = old.encode(x).codes
    old.save_pretrained(tmp_path / "old")
    loaded = voxtok.load(tmp_path / "old")
    assert loaded.config()["encoder"]["class"] == "ConcatEncoder" and loaded.name == "xcodec2-50hz-tiny"
    assert torch.equal(loaded.encode(x).codes, codes)
    with pytest.raises(KeyError):
        loaded.config()["encoder"]["args"]["semantic_model"]  # the old layout, not the new one
