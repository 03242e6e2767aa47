"""hf-mimi: a random transformers MimiModel (reduced config, 32 codebooks kept) converts to voxtok with
identical codes and decoded audio within 1e-5 of its peak, batched and streamed. Every parameter of the reference is
distinguishable (norms and layer scales randomised), so a converter that swaps two of them fails."""

from __future__ import annotations

import pytest
import torch
from reference_helpers import assert_audio_close, distinct_constants_

from voxtok.codecs.convert import convert

HOP = 12  # SEANet strides 2 x 3, then the 2x frame-rate step


def _fill(rvq, latents, size):
    """Codebooks from frames of each stage's residual (random usage counts), so codes vary on real speech.

    Rows are half a residual frame plus noise: each stage removes part of the residual, as a trained RVQ does.
    (Rows equal to frames would shrink it 10x a stage; by stage 20 it is rounding noise and codes are chance.)"""
    e = rvq.input_proj(latents) if rvq.input_proj is not None else latents
    residual = e.permute(0, 2, 1).reshape(-1, e.shape[1])
    for layer in rvq.layers:
        cb = layer.codebook
        rows = residual[torch.randperm(residual.shape[0])[:size]]
        rows = 0.5 * rows + 0.5 * rows.std() * torch.randn_like(rows)  # the residual shrinks slowly, as trained
        usage = torch.empty(size).uniform_(0.5, 2.0)
        cb.cluster_usage.copy_(usage)
        cb.embed_sum.copy_(rows * usage[:, None])
        cb._embed = None
        residual = residual - cb.embed[cb.quantize(residual)]


def _reference(tmp_path, speech, num_quantizers=32, vq_dim=8):
    from transformers import MimiConfig, MimiModel

    cfg = MimiConfig(
        num_filters=4, hidden_size=16, upsampling_ratios=[3, 2], num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=32, codebook_dim=vq_dim, codebook_size=16,
        vector_quantization_hidden_dimension=vq_dim, num_quantizers=num_quantizers, upsample_groups=16,
        sliding_window=5, layer_scale_initial_scale=0.3,
    )  # fmt: skip
    ref = MimiModel(cfg).eval()
    # LayerNorms (1 / 0) and both layer scales (0.3) start constant: make each distinguishable. (Seed 0 happens to
    # put a near-tie in a deep RVQ stage, which float noise between a batch and a single item then flips.)
    changed = distinct_constants_(ref, only=("layernorm", "layer_scale"), seed=1)
    assert any("input_layernorm" in n for n in changed) and any("mlp_layer_scale" in n for n in changed)
    with torch.no_grad():
        latents = ref.encoder(speech(24000, 2, 40 * HOP)).latents
        _fill(ref.quantizer.semantic_residual_vector_quantizer, latents, 16)
        _fill(ref.quantizer.acoustic_residual_vector_quantizer, latents, 16)
    ref.save_pretrained(tmp_path / "hf")
    return ref


def _assert_codes_match(codes, ref_codes, exact_stages=24, max_flipped=0.005):
    """Equal in the first ``exact_stages`` codebooks; in the deeper ones at most ``max_flipped`` of the codes differ.
    The late stages of a random 32-stage RVQ quantize a residual near float rounding, where near-ties flip with the
    CPU's kernels and the grouping of the sums (an AVX2-only CPU flipped 2 of 1536 codes, stages 29 and 30 of one
    frame, that an AVX-512 one matched). A converter error changes the first stages."""
    assert codes.shape == ref_codes.shape
    assert torch.equal(codes[:, :exact_stages], ref_codes[:, :exact_stages])
    flipped = (codes != ref_codes).float().mean().item()
    assert flipped <= max_flipped, f"{flipped:.2%} of the codes differ"


def _ref(ref, x):
    with torch.no_grad():
        codes = ref.encode(x).audio_codes
        return codes, ref.decode(codes).audio_values


def test_codes_and_audio_match_transformers(tmp_path, speech):
    ref = _reference(tmp_path, speech)
    codec = convert("hf-mimi", tmp_path / "hf")
    assert codec.num_codebooks == 32 and codec.hop_length == HOP and codec.causal
    x = speech(24000, 2, 24 * HOP)  # 24 frames: twice the 5-frame attention window of the 25 Hz Transformer
    ref_codes, ref_audio = _ref(ref, x)
    assert ref_codes.shape == (2, 32, 24)
    assert all(ref_codes[:, q].unique().numel() >= 3 for q in range(32))  # codes vary in every codebook
    tokens = codec.encode(x)
    _assert_codes_match(tokens.codes, ref_codes)
    audio = codec.decode(ref_codes)  # the decoder on the reference's own codes
    assert audio.shape == ref_audio.shape == x.shape
    # float32 and the same operations, grouped differently (fused q/k/v, complex RoPE): ~1e-7 of the peak.
    assert_audio_close(audio, ref_audio)
    for i in range(2):  # batched == alone
        _assert_codes_match(codec.encode(x[i : i + 1]).codes, ref_codes[i : i + 1])
    # 8 codebooks, as the moshi LM uses: the prefix decodes like transformers'
    with torch.no_grad():
        ref8 = ref.decode(ref_codes[:, :8]).audio_values
    assert torch.equal(codec.encode(x, n_q=8).codes, ref_codes[:, :8])
    assert_audio_close(codec.decode(ref_codes[:, :8]), ref8)


def test_streaming_matches_offline(tmp_path, speech):
    _reference(tmp_path, speech)
    codec = convert("hf-mimi", tmp_path / "hf")
    x = speech(24000, 2, 24 * HOP)
    offline = codec.encode(x).codes
    chunks, audio = [], []
    with codec.streaming(2):
        for start in range(0, x.shape[-1], 4 * HOP):
            chunks.append(codec.encode(x[..., start : start + 4 * HOP]).codes)
        for t in range(0, offline.shape[-1], 4):
            audio.append(codec.decode(offline[..., t : t + 4]))
    _assert_codes_match(torch.cat(chunks, -1), offline)
    assert_audio_close(torch.cat(audio, -1), codec.decode(offline))


def test_full_width_code_space_has_no_projection(tmp_path, speech):
    """With vector_quantization_hidden_dimension == hidden_size Mimi has no projections: identity in voxtok."""
    ref = _reference(tmp_path, speech, num_quantizers=4, vq_dim=16)
    assert ref.quantizer.semantic_residual_vector_quantizer.input_proj is None
    codec = convert("hf-mimi", tmp_path / "hf")
    x = speech(24000, 2, 12 * HOP)
    ref_codes, ref_audio = _ref(ref, x)
    assert torch.equal(codec.encode(x).codes, ref_codes)
    assert_audio_close(codec.decode(ref_codes), ref_audio)


def test_missing_codebook_is_named(tmp_path, speech):
    from safetensors.torch import load_file, save_file

    _reference(tmp_path, speech, num_quantizers=4)
    file = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(file))
    del state["quantizer.acoustic_residual_vector_quantizer.layers.1.codebook.cluster_usage"]
    save_file(state, str(file))
    with pytest.raises(ValueError, match=r"acoustic_residual_vector_quantizer\.layers\.1\.codebook\.cluster_usage"):
        convert("hf-mimi", tmp_path / "hf")
