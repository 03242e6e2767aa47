"""hf-encodec: a random transformers EncodecModel (reduced config) converts to voxtok with identical codes, decoded
audio within 1e-5 of its peak and the EMA state kept; strict loading names bad tensors. Every tensor of the
reference is distinguishable (constant parameters and the EMA state randomised)."""

from __future__ import annotations

import json

import pytest
import torch
from reference_helpers import assert_audio_close, distinct_constants_
from safetensors.torch import load_file, save_file

from voxtok.codecs.convert import convert

HOP = 8


def _reference(tmp_path, speech):
    from transformers import EncodecConfig, EncodecModel

    # 24 kHz, hop 8 -> 3000 frames/s; 16 codes = 4 bits; 48 kbps -> 4 codebooks.
    cfg = EncodecConfig(num_filters=4, hidden_size=8, upsampling_ratios=[4, 2], num_lstm_layers=1,
                        codebook_size=16, target_bandwidths=[12.0, 48.0])  # fmt: skip
    ref = EncodecModel(cfg).eval()
    distinct_constants_(ref)
    # transformers initialises the codebooks to zeros (every code 0). Fill each stage with frames of that stage's
    # residual on real speech, so codes vary and sit on the latents' scale (as k-means init would). The EMA state
    # is consistent and distinguishable: random cluster sizes, embed_avg = embed * cluster_size.
    x = speech(24000, 2, 40 * HOP)
    with torch.no_grad():
        residual = ref.encoder(x).permute(0, 2, 1).reshape(-1, cfg.hidden_size)
        for layer in ref.quantizer.layers:
            cb = layer.codebook
            pick = torch.randperm(residual.shape[0])[: cfg.codebook_size]
            cb.embed.copy_(residual[pick] + 0.01 * torch.randn_like(residual[pick]))
            cb.cluster_size.uniform_(0.5, 2.0)
            cb.embed_avg.copy_(cb.embed * cb.cluster_size[:, None])
            idx = cb.quantize(residual)
            residual = residual - cb.embed[idx]
    ref.save_pretrained(tmp_path / "hf")
    return ref, x


def test_codes_and_audio_match_transformers(tmp_path, speech):
    ref, x = _reference(tmp_path, speech)
    codec = convert("hf-encodec", tmp_path / "hf")
    assert codec.num_codebooks == 4 and codec.hop_length == HOP and codec.sample_rate == 24000
    with torch.no_grad():
        ref_codes = ref.encode(x, bandwidth=48.0).audio_codes[0]  # [1 chunk, B, Q, T] -> [B, Q, T]
        ref_audio = ref.decode(ref_codes[None], [None]).audio_values
    assert ref_codes.shape == (2, 4, 40)
    for q in range(4):  # a meaningful comparison needs codes that vary over time and between items
        assert ref_codes[:, q].unique().numel() >= 4, q
    tokens = codec.encode(x)
    assert torch.equal(tokens.codes, ref_codes)
    audio = codec.decode(tokens)
    assert audio.shape == ref_audio.shape == x.shape
    # Same float32 operations in another order (fused LSTM, in-place activations): ~1e-7 of the peak.
    assert_audio_close(audio, ref_audio)
    # Batched == each item alone.
    for i in range(2):
        assert torch.equal(codec.encode(x[i : i + 1]).codes, ref_codes[i : i + 1])
    # The EMA state carries over, so fine-tuning continues EnCodec's averages.
    for layer, stage in zip(ref.quantizer.layers, codec.quantizer.stages, strict=True):
        cb = layer.codebook
        assert torch.equal(stage.codebook, cb.embed) and torch.equal(stage.ema_sum, cb.embed_avg)
        assert torch.equal(stage.ema_count, cb.cluster_size) and bool(stage.initialized)


def test_round_trip_through_save_pretrained(tmp_path, speech):
    from voxtok import Codec

    _reference(tmp_path, speech)
    codec = convert("hf-encodec", tmp_path / "hf")
    codec.save_pretrained(tmp_path / "vx")
    again = Codec.from_pretrained(tmp_path / "vx")
    x = speech(24000, 1, 10 * HOP)
    assert torch.equal(codec.encode(x).codes, again.encode(x).codes)


def _edit(tmp_path, speech, change):
    _reference(tmp_path, speech)
    file = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(file))
    change(state)
    save_file(state, str(file))


def test_missing_tensor_is_named(tmp_path, speech):
    _edit(tmp_path, speech, lambda s: s.pop("quantizer.layers.2.codebook.embed"))
    with pytest.raises(ValueError, match=r"quantizer\.layers\.2\.codebook\.embed"):
        convert("hf-encodec", tmp_path / "hf")


def test_extra_tensor_is_named(tmp_path, speech):
    _edit(tmp_path, speech, lambda s: s.__setitem__("quantizer.layers.9.codebook.embed", torch.zeros(16, 8)))
    with pytest.raises(ValueError, match=r"quantizer\.layers\.9\.codebook\.embed"):
        convert("hf-encodec", tmp_path / "hf")


def test_wrong_shape_is_named(tmp_path, speech):
    name = "decoder.layers.0.conv.bias"

    def change(s):
        s[name] = torch.zeros(s[name].shape[0] + 1)

    _edit(tmp_path, speech, change)
    with pytest.raises(ValueError, match=rf"{name}.*shape"):
        convert("hf-encodec", tmp_path / "hf")


def test_unsupported_config_and_kind_are_refused(tmp_path, speech):
    _reference(tmp_path, speech)
    cfg_file = tmp_path / "hf" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "normalize": True}))
    with pytest.raises(ValueError, match="normalize"):
        convert("hf-encodec", tmp_path / "hf")
    with pytest.raises(ValueError, match="unknown convert kind"):
        convert("hf-nothing", tmp_path / "hf")
    cfg_file.write_text(json.dumps({**cfg, "model_type": "dac"}))
    with pytest.raises(ValueError, match="model_type"):
        convert("hf-encodec", tmp_path / "hf")


def test_cli_handler_writes_a_loadable_directory(tmp_path, speech, capsys):
    import argparse

    import voxtok
    from voxtok.codecs.convert import add_convert_parser

    _reference(tmp_path, speech)
    parser = argparse.ArgumentParser(prog="voxtok")
    add_convert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", "hf-encodec", str(tmp_path / "hf"), str(tmp_path / "out")])
    assert args.func(args) == 0
    assert "4 x 16 codes" in capsys.readouterr().out
    codec = voxtok.load(tmp_path / "out")
    assert codec.name == "encodec-24khz" and codec.num_codebooks == 4
    with pytest.raises(SystemExit):  # unknown kinds stop at argument parsing
        parser.parse_args(["convert", "nothing", "a", "b"])


def test_voxtok_cli_has_convert(tmp_path, speech):
    from voxtok.cli import main

    _reference(tmp_path, speech)
    assert main(["convert", "hf-encodec", str(tmp_path / "hf"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert main(["convert", "hf-encodec", str(tmp_path / "missing"), str(tmp_path / "out2")]) == 1
