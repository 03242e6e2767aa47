"""hf-xcodec2: a random transformers Xcodec2Model (reduced config) converts to voxtok; the same audio encodes to
the same codes (single items, batches, padded batches), the same codes decode to the same audio within 1e-4, and
a checkpoint with a missing, extra or misshapen tensor is refused by name."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from reference_helpers import assert_audio_close

from voxtok.codecs.convert import convert

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "Xcodec2Config"):
    pytest.skip("this transformers has no X-codec2", allow_module_level=True)

HOP = 320  # the encoder's filterbank fixes it: two 10 ms frames per token


def _reference(tmp_path):
    from transformers import Xcodec2Config, Xcodec2Model

    semantic = {"model_type": "wav2vec2-bert", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 32, "output_hidden_size": 16}  # fmt: skip
    cfg = Xcodec2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        head_dim=8, encoder_hidden_size=2, semantic_model_config=semantic,
        quantization_dim=48,  # = hidden_size + the semantic model's width, as 1024 + 1024 = 2048 in X-codec2
    )  # fmt: skip
    ref = Xcodec2Model(cfg).eval()
    with torch.no_grad():  # move every weight off its init (zero biases, unit norms) so a misplaced one shows
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "hf")
    return ref


@pytest.fixture
def pair(tmp_path):
    ref = _reference(tmp_path)
    return ref, convert("hf-xcodec2", tmp_path / "hf")


def _reference_inputs(codec, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """What transformers' ``Xcodec2FeatureExtractor`` makes of ``items`` (each ``[S_i]``): one zero appended,
    zero-padded to the longest and to whole frames; filterbank features per item over its own whole frames.

    That extractor needs torchaudio; the features here come from voxtok's ``KaldiFbank`` (checked against
    SeamlessM4T's numpy recipe in tests/models/test_bigcodec.py and below), so these tests pin the converted
    network, and ``test_features_match_the_seamless_recipe`` pins the features."""
    items = [F.pad(a, (0, 1)) for a in items]
    lengths = torch.tensor([a.shape[-1] for a in items])
    width = -(-int(lengths.max()) // HOP) * HOP
    values = torch.stack([F.pad(a, (0, width - a.shape[-1])) for a in items])[:, None]
    feats, mask = codec.encoder.features(values, lengths)
    return {"input_values": values, "input_features": feats, "input_features_mask": mask}


def _codes(ref, inputs) -> torch.Tensor:
    with torch.no_grad():
        return ref.encode(**inputs).audio_codes


def test_encode_matches_transformers(pair, speech):
    ref, codec = pair
    assert codec.name == "xcodec2-50hz" and codec.hop_length == HOP and codec.codebook_size == 4**8
    audio = speech(16000, 1, 50 * HOP - 100)  # not whole frames: both pad to the same 50 frames
    expected = _codes(ref, _reference_inputs(codec, [audio[0, 0]]))
    assert expected.shape == (1, 1, 50)
    assert expected.unique().numel() >= 5 and (expected[..., 1:] != expected[..., :-1]).any()  # codes vary
    tokens = codec.encode(audio)
    assert torch.equal(tokens.codes, expected)
    assert tokens.lengths.tolist() == [50] and tokens.audio_lengths.tolist() == [50 * HOP - 100]


def test_whole_frame_lengths(pair, speech):
    """transformers appends one sample before padding, so whole-frame audio gets one frame of silence more;
    voxtok gives ceil(S / hop) frames, and appending one zero sample reproduces transformers' codes."""
    ref, codec = pair
    audio = speech(16000, 1, 40 * HOP)
    expected = _codes(ref, _reference_inputs(codec, [audio[0, 0]]))
    assert expected.shape == (1, 1, 41)
    assert codec.encode(audio).codes.shape == (1, 1, 40)
    assert torch.equal(codec.encode(F.pad(audio, (0, 1))).codes, expected)


def test_batch_matches_transformers(pair, speech):
    ref, codec = pair
    audio = speech(16000, 3, 30 * HOP - 7)
    expected = _codes(ref, _reference_inputs(codec, list(audio[:, 0])))
    assert expected.shape == (3, 1, 30) and not torch.equal(expected[0], expected[1])
    assert torch.equal(codec.encode(audio).codes, expected)
    for i in range(3):  # and each item alone (equal lengths: no padding in the batch)
        assert torch.equal(codec.encode(audio[i : i + 1]).codes, expected[i : i + 1])


def test_padded_batch_matches_transformers(pair, speech):
    """Items of different lengths: the encoder's ``lengths`` keeps each item's filterbank statistics to its own
    samples, as transformers' feature extractor does; the acoustic path sees the zero-padded batch on both sides."""
    ref, codec = pair
    audio = speech(16000, 2, 30 * HOP - 7)
    short = 17 * HOP + 5
    inputs = _reference_inputs(codec, [audio[0, 0], audio[1, 0, :short]])
    expected = _codes(ref, inputs)
    lengths = torch.tensor([30 * HOP - 6, short + 1])  # the appended sample included, as transformers counts
    with torch.no_grad():
        codes = codec.quantizer.encode(codec.encoder(inputs["input_values"], lengths))
    assert torch.equal(codes, expected)
    # Codec.encode hands its lengths to this encoder, so the user-facing call gives the same codes.
    assert torch.equal(codec.encode(inputs["input_values"], lengths=lengths).codes, expected)


def test_latents_match_transformers(pair, speech):
    """The continuous latents before quantization (transformers' fc_encoder output) agree to float rounding."""
    ref, codec = pair
    audio = speech(16000, 1, 20 * HOP - 1)
    inputs = _reference_inputs(codec, [audio[0, 0]])
    with torch.no_grad():
        semantic = ref.semantic_encoder(inputs["input_features"], attention_mask=inputs["input_features_mask"])
        hidden = torch.cat([ref.semantic_adapter(semantic.last_hidden_state.transpose(1, 2)),
                            ref.acoustic_encoder(inputs["input_values"])], dim=1)  # fmt: skip
        expected = ref.fc_encoder(hidden.transpose(1, 2)).transpose(1, 2)
    latents = codec.encode_latents(audio)
    assert latents.shape == expected.shape == (1, 48, 20)
    # float32; measured ~1e-6 of the latents' scale apart; a misplaced weight moves them by ~1e-1
    assert (latents - expected).abs().max() < 1e-4 * expected.abs().max()


def test_features_match_the_seamless_recipe(pair, speech):
    """End to end with features from SeamlessM4T's numpy recipe (what X-codec2 was trained with; float64):
    the features differ from voxtok's float32 ones by ~1e-4, which can move a latent across a rounding
    boundary only rarely (here: no code differs)."""
    ref, codec = pair
    audio = speech(16000, 1, 50 * HOP - 100)
    fe = transformers.SeamlessM4TFeatureExtractor(padding_value=1.0)
    wave = F.pad(audio[0, 0], (HOP // 2, 100 + HOP // 2))
    seamless = fe([wave.numpy()], sampling_rate=16000, return_tensors="pt")
    inputs = _reference_inputs(codec, [audio[0, 0]])
    assert (inputs["input_features"] - seamless["input_features"]).abs().max() < 5e-4
    inputs["input_features"] = seamless["input_features"]
    expected = _codes(ref, inputs)
    assert (codec.encode(audio).codes == expected).float().mean() >= 0.95


def test_feature_extractor_of_transformers(pair, speech):
    """With torchaudio installed: transformers' own feature extractor, end to end."""
    pytest.importorskip("torchaudio")
    ref, codec = pair
    audio = speech(16000, 2, 30 * HOP - 7)
    fe = transformers.Xcodec2FeatureExtractor()
    inputs = fe([a[0].numpy() for a in audio], sampling_rate=16000, return_tensors="pt")
    expected = _codes(ref, {k: inputs[k] for k in ("input_values", "input_features", "input_features_mask")})
    assert (codec.encode(audio).codes == expected).float().mean() >= 0.95


def test_decode_matches_transformers(pair):
    ref, codec = pair
    codes = torch.randint(0, 4**8, (3, 1, 20))
    with torch.no_grad():
        expected = ref.decode(audio_codes=codes).audio_values
    audio = codec.decode(codes)
    assert audio.shape == expected.shape == (3, 1, 20 * HOP)
    # float32; the iSTFT is the same overlap-add in another order.
    assert_audio_close(audio, expected)
    assert expected.abs().max() > 1e-3  # not a silent comparison
    for i in range(3):  # batched == alone
        assert_audio_close(codec.decode(codes[i : i + 1]), expected[i : i + 1])


def test_grid_matches_transformers_fsq(pair):
    """Index -> grid values -> project_out: voxtok's FSQ decode equals X-codec2's ``from_codes``."""
    ref, codec = pair
    idx = torch.arange(0, 4**8, 97)[None, None]
    with torch.no_grad():
        theirs = ref.quantizer.from_codes(idx.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(codec.quantizer.decode(idx), theirs, rtol=0, atol=1e-6)


def test_saved_directory_round_trips(pair, tmp_path, speech):
    from voxtok import Codec

    _, codec = pair
    codec.save_pretrained(tmp_path / "vx")
    again = Codec.from_pretrained(tmp_path / "vx")
    audio = speech(16000, 1, 10 * HOP + 3)
    assert torch.equal(again.encode(audio).codes, codec.encode(audio).codes)
    codes = torch.randint(0, 4**8, (1, 1, 5))
    assert torch.equal(again.decode(codes), codec.decode(codes))


def _edit_checkpoint(tmp_path, edit) -> None:
    from safetensors.torch import load_file, save_file

    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("acoustic_encoder.block.1.res_unit2.conv1.weight"),
         "missing tensor 'acoustic_encoder.block.1.res_unit2.conv1.weight'"),
        (lambda s: s.pop("semantic_encoder.encoder.layers.1.self_attn.linear_q.weight"),
         "missing tensor 'semantic_encoder.encoder.layers.1.self_attn.linear_q.weight'"),
        (lambda s: s.__setitem__("acoustic_encoder.block.5.conv1.weight", torch.zeros(1)),
         r"unexpected tensor\(s\) \['acoustic_encoder.block.5.conv1.weight'\]"),
        (lambda s: s.__setitem__("semantic_adapter.conv1.weight", torch.zeros(16, 16, 5)),
         "tensor 'semantic_adapter.conv1.weight' has shape"),
        (lambda s: s.__setitem__("fc_encoder.bias", torch.zeros(47)), "tensor 'fc_encoder.bias' has shape"),
    ],
)  # fmt: skip
def test_bad_encoder_tensors_are_named(tmp_path, edit, message):
    _reference(tmp_path)
    _edit_checkpoint(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        convert("hf-xcodec2", tmp_path / "hf")


def test_unsupported_configs_are_refused(tmp_path):
    _reference(tmp_path)
    cfg_file = tmp_path / "hf" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    for key, value, message in [("downsampling_ratios", [4, 4], "needs 320"),
                                ("quantization_dim", 40, "quantization_dim=40"),
                                ("sampling_rate", 24000, "sampling_rate=24000")]:  # fmt: skip
        cfg_file.write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=message):
            convert("hf-xcodec2", tmp_path / "hf")
