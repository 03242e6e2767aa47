"""Systems: transformers codecs (DacModel, EncodecModel, MimiModel, XcodecModel, Xcodec2Model) from saved random
configs run through their own encode / decode; ``voxtok eval`` compares them with a voxtok model on the same files
with the same metric code."""

from __future__ import annotations

import json

import pytest
import torch

from voxtok.cli import main
from voxtok.eval.baselines import TransformersCodec, VoxtokModel, load_model

transformers = pytest.importorskip("transformers")


def _configs():
    from transformers import DacConfig, EncodecConfig, MimiConfig, Xcodec2Config, XcodecConfig

    return {
        "dac": DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16, hidden_size=16,
                         codebook_size=16, codebook_dim=4, n_codebooks=3, sampling_rate=16000),
        "encodec": EncodecConfig(num_filters=4, hidden_size=8, upsampling_ratios=[4, 2], num_lstm_layers=1,
                                 codebook_size=16, target_bandwidths=[12.0, 48.0]),
        "mimi": MimiConfig(num_filters=4, hidden_size=16, upsampling_ratios=[3, 2], num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, intermediate_size=32, codebook_dim=8,
                           codebook_size=16, vector_quantization_hidden_dimension=8, num_quantizers=4,
                           upsample_groups=16, sliding_window=5),
        "xcodec": XcodecConfig(
            acoustic_model_config={"encoder_hidden_size": 4, "downsampling_ratios": [2, 2, 2, 2],
                                   "decoder_hidden_size": 16, "upsampling_ratios": [2, 2, 2, 2], "hidden_size": 16,
                                   "codebook_size": 16, "codebook_dim": 4, "n_codebooks": 2},
            semantic_model_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "intermediate_size": 32, "conv_dim": [8, 8], "conv_stride": [4, 4],
                                   "conv_kernel": [8, 4]},
            codebook_size=16, target_bandwidths=[4.0, 8.0]),
        "xcodec2": Xcodec2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
            head_dim=8, encoder_hidden_size=2, quantization_dim=48,
            semantic_model_config={"model_type": "wav2vec2-bert", "hidden_size": 16, "num_hidden_layers": 1,
                                   "num_attention_heads": 2, "intermediate_size": 32, "output_hidden_size": 16}),
    }


def _save(kind, path):
    from voxtok.eval.baselines import TRANSFORMERS_CODECS

    cfg = _configs()[kind]
    model = getattr(transformers, TRANSFORMERS_CODECS[kind])(cfg).eval()
    if kind == "xcodec2":  # some of its layers start at zero, which would make silence of any input
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


# (kind, codebooks, size, frame rate)
EXPECTED = [("dac", 3, 16, 2000.0), ("encodec", 4, 16, 3000.0), ("mimi", 4, 16, 2000.0), ("xcodec", 2, 16, 1000.0),
            ("xcodec2", 1, 4**8, 50.0)]


@pytest.mark.parametrize(("kind", "q", "k", "frame_rate"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_transformers_codecs_run_through_transformers(tmp_path, kind, q, k, frame_rate):
    _save(kind, tmp_path / kind)
    model = load_model(tmp_path / kind)
    assert isinstance(model, TransformersCodec) and model.model_type == kind
    assert (model.codebook_sizes, model.frame_rate) == ([k] * q, frame_rate)
    assert model.info["hash"].startswith("model.safetensors sha256:")
    x = 0.1 * torch.randn(7001)  # not a whole number of frames at any rate
    rec = model.reconstruct(x, 22050)
    n = round(7001 * model.sample_rate / 22050)
    assert rec.audio.shape == (n,) and torch.isfinite(rec.audio).all() and rec.audio.abs().max() > 0
    assert rec.codes.dtype == torch.int64 and rec.codes.shape[0] == q
    assert rec.codes.shape[1] >= n // model.hop and 0 <= int(rec.codes.min()) and int(rec.codes.max()) < k
    assert load_model(f"transformers:{tmp_path / kind}").info["class"] == model.info["class"]


def test_cli_compares_voxtok_and_transformers_on_the_same_files(data_dir, tmp_path, capsys):
    ref = _save("dac", tmp_path / "hf-dac")
    with torch.no_grad():  # N(0, 1) codebooks leave one code in use on a random encoder: spread them out
        for stage in ref.quantizer.quantizers:
            stage.codebook.weight.mul_(0.05)
    ref.save_pretrained(tmp_path / "hf-dac")
    # Real recordings: espeak-ng's exact digital silence makes a random encoder's latents vanish (~1e-26), where
    # the code chosen is arbitrary and two implementations may pick differently.
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,text,start,end\n{data_dir / 'LJ001-0002.flac'},words,,\n"
                        f"{data_dir / 'ami-ES2011a-headset.wav'},more words,1.0,3.0\n"
                        f"{data_dir / '2412-153948-0001.flac'},not read,,\n")
    out = tmp_path / "out"
    rc = main(["eval", "encodec-24khz-tiny", "--input", str(manifest), "--output", str(out), "--metrics",
               "pesq,si_sdr", "codes", "--max-items", "2", "--no-progress", "--baseline",
               str(tmp_path / "hf-dac"), "--baseline", f"hf-dac:{tmp_path / 'hf-dac'}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| PESQ wb |" in printed and "codec" in printed and "s / utterance" in printed
    data = json.loads((out / "results.json").read_text())
    names = [s["name"] for s in data["systems"]]
    assert names == ["encodec-24khz-tiny", "hf-dac", "hf-dac (hf-dac)"]
    assert [s["kind"] for s in data["systems"]] == ["voxtok", "transformers", "voxtok"]
    assert len(data["items"]) == 2 and all(set(r["systems"]) == set(names) for r in data["items"])
    for name in names:
        assert data["summary"][name]["pesq_wb"]["n"] == 2 and data["summary"][name]["si_sdr"]["failed"] == 0
    # transformers' DAC and the same weights converted into voxtok: the same codes, so the same code statistics,
    # and audio within 1e-4 (docs/interop.md), so the same scores from the same metric code.
    a, b = data["codes"]["hf-dac"], data["codes"]["hf-dac (hf-dac)"]
    assert a["per_codebook"] == b["per_codebook"] and a["frames"] == b["frames"]
    assert a["codebook_usage"] > 1 / 16  # the codes vary, so the comparison means something
    for r in data["items"]:
        sa, sb = r["systems"]["hf-dac"]["values"], r["systems"]["hf-dac (hf-dac)"]["values"]
        assert sa["pesq_wb"] == pytest.approx(sb["pesq_wb"], abs=1e-3)
        assert sa["si_sdr"] == pytest.approx(sb["si_sdr"], abs=1e-2)
    assert (out / "report.md").is_file()


def test_model_specs(tmp_path):
    codec = load_model("encodec-24khz-tiny", n_q=2)
    assert isinstance(codec, VoxtokModel) and codec.codebook_sizes == [16, 16] and codec.info["random_weights"]
    codec.codec.save_pretrained(tmp_path / "saved")
    again = load_model(tmp_path / "saved")
    assert again.info["hash"] == codec.info["hash"] and again.name == "saved"
    with pytest.raises(ValueError, match="n_q must be in"):
        load_model("encodec-24khz-tiny", n_q=9)
    with pytest.raises(ValueError, match="not a preset"):
        load_model("no-such-model")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="neither a voxtok codec"):
        load_model(tmp_path / "other")
    with pytest.raises(ValueError, match="not a codec voxtok eval runs"):
        load_model(f"transformers:{tmp_path / 'other'}")


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = main(["eval", "encodec-24khz-tiny", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"),
               "--no-progress"])
    assert rc == 1
    assert "voxtok eval: error:" in capsys.readouterr().err
    rc = main(["eval", "encodec-24khz-tiny", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
               "--metrics", "visqol", "--no-progress"])
    assert rc == 1 and "unknown metric 'visqol'" in capsys.readouterr().err
