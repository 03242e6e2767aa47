"""Part specs: every part saves however it was built, the registry is complete, old configs keep loading."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import voxtok.models
import voxtok.quantizers
from voxtok.codecs import Codec, load, register_part
from voxtok.codecs.parts import build_part, part_class, part_name, part_names, spec_of
from voxtok.hparams import RecordsHParams
from voxtok.models import CausalTransformer, EncoderChain, SEANetDecoder, SEANetEncoder
from voxtok.models.base import Decoder, Encoder, Stage
from voxtok.models.chain import DecoderChain
from voxtok.quantizers import Quantizer, ResidualVectorQuantizer, SplitResidualVectorQuantizer, VectorQuantizer


def _roundtrip(codec: Codec, tmp_path: Path) -> Codec:
    codec.eval()
    loaded = load(codec.save_pretrained(tmp_path / "saved"))
    x = torch.randn(2, 1, 300) * 0.1
    assert torch.equal(loaded.encode(x).codes, codec.encode(x).codes)
    torch.testing.assert_close(loaded.decode(codec.encode(x)), codec.decode(codec.encode(x)))
    return loaded


def test_parts_built_with_constructors_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = SEANetEncoder(dimension=8, n_filters=4, ratios=(2, 3), lstm_layers=0)  # a tuple argument
    q = ResidualVectorQuantizer(8, 3, [16, 8, 4], codebook_dim=4)
    dec = SEANetDecoder(dimension=8, n_filters=4, ratios=[3, 2], lstm_layers=0)
    codec = Codec(enc, q, dec, sample_rate=16000)
    codec.train()(torch.randn(2, 1, 300) * 0.1)  # k-means init: the codebooks are state, not constructor args
    loaded = _roundtrip(codec, tmp_path)
    assert loaded.config()["encoder"] == {"class": "SEANetEncoder", "args": {
        "dimension": 8, "n_filters": 4, "ratios": [2, 3], "lstm_layers": 0}}  # fmt: skip
    assert loaded.config() == codec.config()


def test_parts_built_with_named_and_nested_chains_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    seanet = SEANetEncoder.named("tiny-causal", dimension=16, lstm_layers=0)
    transformer = CausalTransformer.named("tiny", d_model=16, num_heads=2)
    enc = EncoderChain([seanet, transformer])
    dec = DecoderChain([CausalTransformer.named("tiny", d_model=16, num_heads=2),
                        SEANetDecoder.named("tiny-causal", dimension=16, lstm_layers=0)])  # fmt: skip
    q = SplitResidualVectorQuantizer.named("mimi", dim=16, code_dim=8, num_quantizers=3, codebook_size=16)
    codec = Codec(enc, q, dec, sample_rate=24000, causal=True)
    loaded = _roundtrip(codec, tmp_path)
    stages = loaded.config()["encoder"]["args"]["stages"]
    assert [s["class"] for s in stages] == ["SEANetEncoder", "CausalTransformer"]
    assert stages[1]["args"] == {**CausalTransformer.CONFIGS["tiny"], "d_model": 16, "num_heads": 2}


def test_a_subclass_calling_super_with_fixed_options_records_its_own_arguments() -> None:
    class Fixed(VectorQuantizer):
        def __init__(self, dim: int) -> None:
            super().__init__(dim, 8, metric="cosine")

    assert Fixed(4).hparams == {"dim": 4}
    assert VectorQuantizer(4, codebook_size=8).hparams == {"dim": 4, "codebook_size": 8}


class _Weights(Encoder):
    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.channels, self.dimension, self.hop_length = 1, 3, 4
        self.proj = nn.Linear(4, 3)

    def output_length(self, input_length: int) -> int:
        return -(-input_length // 4)

    def forward(self, audio: Tensor) -> Tensor:
        b, _, s = audio.shape
        return self.proj(audio.reshape(b, s // 4, 4)).transpose(1, 2)


def test_unsaveable_parts_say_which_and_why() -> None:
    from voxtok.quantizers import IdentityQuantizer

    dec = SEANetDecoder.named("tiny", dimension=3, ratios=[2, 2], lstm_layers=0)
    codec = Codec(_Weights(torch.ones(2)), IdentityQuantizer(3), dec, sample_rate=16000)
    with pytest.raises(ValueError, match=r"encoder \(.*_Weights\) is not a registered part.*register_part"):
        codec.config()
    register_part("TestWeightsEncoder", _Weights)
    with pytest.raises(ValueError, match="encoder.weights is a Tensor, which config.json cannot hold"):
        codec.config()


def _defined_classes(package) -> list[type]:
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                found.append(obj)
    return found


def test_every_registry_entry_imports_and_records_its_arguments() -> None:
    builtin = [part_class(name) for name in part_names()]
    builtin = [cls for cls in builtin if cls.__module__.startswith("voxtok.")]  # not the tests' own parts
    assert len(builtin) >= 20
    for cls in builtin:
        assert issubclass(cls, nn.Module) and issubclass(cls, RecordsHParams), cls


def test_every_encoder_decoder_stage_and_quantizer_class_is_registered() -> None:
    seams = (Encoder, Decoder, Stage, Quantizer)
    classes = [c for p in (voxtok.models, voxtok.quantizers) for c in _defined_classes(p)
               if issubclass(c, seams) and c not in seams and not inspect.isabstract(c)]  # fmt: skip
    assert len(classes) >= 20
    missing = sorted(c.__name__ for c in classes if part_name(c) is None)
    assert not missing, f"not in voxtok.codecs.parts: {missing}"


def test_configs_with_old_class_names_and_weight_names_keep_loading(tmp_path: Path) -> None:
    """A Mimi-layout codec saved when its quantizer was ``MimiSplitResidualVectorQuantizer`` (stages under
    ``rvq.``): the config and the weights as that version wrote them load, with the same codes."""
    torch.manual_seed(0)
    enc = SEANetEncoder.named("tiny-causal", lstm_layers=0)
    dec = SEANetDecoder.named("tiny-causal", lstm_layers=0)
    q = SplitResidualVectorQuantizer.named("mimi", dim=8, code_dim=4, num_quantizers=3, codebook_size=16)
    codec = Codec(enc, q, dec, sample_rate=16000, causal=True).eval()
    d = codec.save_pretrained(tmp_path / "old")
    config = json.loads((d / "config.json").read_text())
    config["quantizer"] = {"class": "MimiSplitResidualVectorQuantizer", "args": {
        "dim": 8, "code_dim": 4, "num_quantizers": 3, "codebook_size": 16, "num_semantic": 1}}  # fmt: skip
    (d / "config.json").write_text(json.dumps(config))
    old = {}
    for k, v in load_file(str(d / "model.safetensors")).items():
        for group in ("semantic", "acoustic"):
            k = k.replace(f".{group}.stages.", f".{group}.rvq.stages.")
        old[k] = v
    assert any(".rvq.stages." in k for k in old)
    save_file(old, str(d / "model.safetensors"))
    loaded = load(d)
    x = torch.randn(1, 1, 120) * 0.1
    assert torch.equal(loaded.encode(x).codes, codec.encode(x).codes)
    assert spec_of(loaded.quantizer, "quantizer")["class"] == "SplitResidualVectorQuantizer"


def test_build_part_records_plain_modules_and_from_pretrained_takes_directories(tmp_path: Path) -> None:
    class Plain(nn.Module):
        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.width = width

    register_part("TestPlain", Plain)
    assert spec_of(build_part({"class": "TestPlain", "args": {"width": 5}}), "x") == {
        "class": "TestPlain", "args": {"width": 5}}  # fmt: skip
    with pytest.raises(ValueError, match=r"not a saved codec directory.*voxtok.load\('mimi-12.5hz-tiny'\)"):
        Codec.from_pretrained("mimi-12.5hz-tiny")


@pytest.mark.parametrize("name", ["mimi-12.5hz-tiny", "xcodec2-50hz-tiny", "dac-16khz-tiny", "cat-12.5hz-tiny"])
def test_a_preset_codec_describes_itself_with_its_preset_config(name: str) -> None:
    """The recorded arguments give back the preset's own specs (so codec hashes over config() do not move)."""
    from voxtok.codecs import build, preset_config

    cfg, got = preset_config(name), build(name).config()
    for role in ("encoder", "quantizer", "decoder"):
        assert json.loads(json.dumps(got[role])) == json.loads(json.dumps(cfg[role]))
