"""hf-dac: a random transformers DacModel (reduced config) converts to voxtok with identical codes and decoded
audio within 1e-5 of its peak; odd strides and other lengths behave as docs/interop.md says."""

from __future__ import annotations

import math

import pytest
import torch
from reference_helpers import assert_audio_close

from voxtok.codecs.convert import convert


def _reference(tmp_path, speech, ratios, n_codebooks=3):
    from transformers import DacConfig, DacModel

    cfg = DacConfig(
        encoder_hidden_size=4, downsampling_ratios=ratios, decoder_hidden_size=16, upsampling_ratios=ratios[::-1],
        hidden_size=16, codebook_size=16, codebook_dim=4, n_codebooks=n_codebooks, sampling_rate=16000,
    )  # fmt: skip
    ref = DacModel(cfg).eval()
    with torch.no_grad():  # random Snake alphas, so a swapped activation would show
        for m in ref.modules():
            if hasattr(m, "alpha"):
                m.alpha.uniform_(0.5, 2.0)
        # N(0, 1) codebooks leave few codes in use on a random encoder's latents: take each stage's codes from
        # its projected residual on real speech instead, times a random scale (DAC decodes the raw rows).
        residual = ref.encoder(speech(16000, 2, 40 * math.prod(ratios)))
        for stage in ref.quantizer.quantizers:
            e = stage.in_proj(residual).permute(0, 2, 1).reshape(-1, cfg.codebook_dim)
            rows = e[torch.randperm(e.shape[0])[: cfg.codebook_size]]
            stage.codebook.weight.copy_(rows * torch.empty(rows.shape[0], 1).uniform_(0.5, 2.0))
            residual = residual - stage(residual)[0]
    ref.save_pretrained(tmp_path / "hf")
    return ref


def _ref_codes_audio(ref, x):
    with torch.no_grad():
        codes = ref.encode(x).audio_codes
        audio = ref.decode(audio_codes=codes).audio_values
    return codes, audio[:, None]


def test_codes_and_audio_match_transformers(tmp_path, speech):
    ref = _reference(tmp_path, speech, [2, 4])
    codec = convert("hf-dac", tmp_path / "hf")
    assert codec.name == "dac-16khz" and codec.hop_length == 8 and codec.num_codebooks == 3
    x = speech(16000, 3, 40 * 8)
    ref_codes, ref_audio = _ref_codes_audio(ref, x)
    assert ref_codes.shape == (3, 3, 40)
    for q in range(3):
        assert ref_codes[:, q].unique().numel() >= 4, q
    tokens = codec.encode(x)
    assert torch.equal(tokens.codes, ref_codes)
    audio = codec.decode(tokens)
    assert audio.shape == ref_audio.shape
    # float32, the same operations (Snake, convs) in another order: ~5e-7 of the peak (a random decoder's output
    # peaks near 1e-2, so an absolute bound would hide a swapped Snake alpha: 2e-3 of the peak).
    assert_audio_close(audio, ref_audio)
    for i in range(3):  # batched == alone
        assert torch.equal(codec.encode(x[i : i + 1]).codes, ref_codes[i : i + 1])
    # a codes prefix decodes as transformers decodes it
    with torch.no_grad():
        ref_prefix = ref.decode(audio_codes=ref_codes[:, :2]).audio_values[:, None]
    assert_audio_close(codec.decode(ref_codes[:, :2]), ref_prefix)


def test_odd_stride_keeps_codes_and_one_more_sample(tmp_path, speech):
    """DAC's odd-stride transposed conv gives ``stride * T - 1`` samples; voxtok gives ``T * hop``. Codes are
    identical; the decoded audio agrees except near the end (the residual units' receptive field)."""
    ref = _reference(tmp_path, speech, [2, 3])
    codec = convert("hf-dac", tmp_path / "hf")
    x = speech(16000, 2, 40 * 6)
    ref_codes, ref_audio = _ref_codes_audio(ref, x)
    assert torch.equal(codec.encode(x).codes, ref_codes)
    audio = codec.decode(ref_codes)
    assert audio.shape[-1] == 240 > ref_audio.shape[-1]
    n = ref_audio.shape[-1] - 160
    assert_audio_close(audio[..., :n], ref_audio[..., :n])


def test_other_lengths_give_ceil_frames_where_transformers_floors(tmp_path, speech):
    ref = _reference(tmp_path, speech, [2, 4])
    codec = convert("hf-dac", tmp_path / "hf")
    x = speech(16000, 1, 40 * 8 + 3)
    ref_codes, _ = _ref_codes_audio(ref, x)
    tokens = codec.encode(x)
    assert ref_codes.shape[-1] == 40 and tokens.codes.shape[-1] == math.ceil(x.shape[-1] / 8) == 41
    # frames whose receptive field stays clear of the end agree
    assert torch.equal(tokens.codes[..., :30], ref_codes[..., :30])
    assert codec.decode(tokens).shape[-1] == x.shape[-1]


def test_wrong_shape_is_named(tmp_path, speech):
    from safetensors.torch import load_file, save_file

    _reference(tmp_path, speech, [2, 4])
    file = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(file))
    state["quantizer.quantizers.1.codebook.weight"] = torch.zeros(16, 5)
    save_file(state, str(file))
    with pytest.raises(ValueError, match=r"quantizer\.quantizers\.1\.codebook\.weight.*shape"):
        convert("hf-dac", tmp_path / "hf")
