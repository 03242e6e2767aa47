"""moshi-mimi: moshi's own Mimi (full size, random weights, 32 codebooks; norms and layer scales randomised) converts
to voxtok with identical codes and decoded audio within 1e-5 of its peak, batched and streamed. Needs
``pip install --no-deps moshi==0.2.13``."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from reference_helpers import assert_audio_close, distinct_constants_

from voxtok.codecs.convert import convert

HOP = 1920


def _import_moshi():
    # moshi's loaders import sentencepiece for the LM's text tokenizer only; Mimi never uses it. Without it
    # installed, a stand-in module lets the import through (nothing here touches the tokenizer).
    if "sentencepiece" not in sys.modules:
        try:
            import sentencepiece  # noqa: F401
        except ImportError:
            stub = types.ModuleType("sentencepiece")
            stub.SentencePieceProcessor = object
            sys.modules["sentencepiece"] = stub
    return pytest.importorskip("moshi.models.loaders")


def _clips(speech):
    """The two inputs the tests use: a batch of 2 and a single item, 6 frames each."""
    batch = speech[..., 36000 : 36000 + 2 * 6 * HOP].reshape(2, 1, -1).float().contiguous()
    single = speech[..., 60000 : 60000 + 6 * HOP].reshape(1, 1, -1).float().contiguous()
    return batch, single


@pytest.fixture(scope="module")
def moshi_mimi(tmp_path_factory):
    loaders = _import_moshi()
    from pathlib import Path

    from safetensors.torch import save_file

    from voxtok import audio as A

    torch.manual_seed(0)
    ref = loaders.get_mimi(None, device="cpu").eval()
    ref.set_num_codebooks(32)
    # moshi leaves its LayerNorms at 1 / 0 and both layer scales at one value: make each distinguishable, so a
    # converter swapping norm1 / norm2 or the two layer scales fails.
    changed = distinct_constants_(ref, only=("norm", "layer_scale"))
    assert any("norm1" in n for n in changed) and any("layer_scale_2" in n for n in changed)
    x, sr = A.read(Path(__file__).parents[2] / "data" / "2412-153948-0001.flac")
    speech = A.resample(x, sr, 24000)
    batch, single = _clips(speech)
    # moshi initialises codebooks to zeros (every code 0). 2048 random codes in 256 dims are all nearly equally
    # far from any frame (near-ties that rounding decides), so each stage gets one close code per frame of the
    # test inputs (a tenth of that frame's residual: the residual shrinks ~10% a stage, as trained RVQs do) and
    # the other codes far away. Codes then vary with the audio, and every choice has a clear margin.
    with torch.no_grad():
        emb = ref.encode_to_latent(torch.cat([batch, single]), quantize=False)
        for rvq in (ref.quantizer.rvq_first, ref.quantizer.rvq_rest):
            residual = rvq.input_proj(emb).permute(0, 2, 1).reshape(-1, 256)
            for layer in rvq.vq.layers:
                cb = layer._codebook
                rows = 10 * residual.std() * torch.randn(2048, 256)
                near = torch.randperm(2048)[: residual.shape[0]]
                rows[near] = 0.1 * residual + 0.01 * residual.std() * torch.randn_like(residual)
                cb.cluster_usage.uniform_(0.5, 2.0)
                cb.embedding_sum.copy_(rows * cb.cluster_usage[:, None])
                cb._initialized.fill_(1.0)
                cb._embedding = None
                residual = residual - cb.embedding[torch.cdist(residual, cb.embedding).argmin(-1)]
    file = tmp_path_factory.mktemp("moshi") / "mimi.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(file))
    return ref, convert("moshi-mimi", file), speech


def test_codes_and_audio_match_moshi(moshi_mimi):
    ref, codec, speech = moshi_mimi
    assert codec.num_codebooks == 32 and codec.hop_length == HOP and codec.frame_rate == 12.5
    x, _ = _clips(speech)
    with torch.no_grad():
        ref_codes = ref.encode(x)
        ref_audio = ref.decode(ref_codes)
    assert ref_codes.shape == (2, 32, 6)
    assert all(ref_codes[:, q].unique().numel() >= 4 for q in range(32))
    tokens = codec.encode(x)
    assert torch.equal(tokens.codes, ref_codes)
    audio = codec.decode(tokens)
    assert audio.shape == ref_audio.shape
    assert_audio_close(audio, ref_audio)  # float32, same operations regrouped
    assert torch.equal(codec.encode(x[1:]).codes, ref_codes[1:])  # batched == alone


def test_streaming_matches_moshi_streaming(moshi_mimi):
    ref, codec, speech = moshi_mimi
    _, x = _clips(speech)
    ours, theirs = [], []
    with torch.no_grad(), ref.streaming(1), codec.streaming(1):
        for start in range(0, x.shape[-1], 2 * HOP):
            chunk = x[..., start : start + 2 * HOP]
            theirs.append(ref.encode(chunk))
            ours.append(codec.encode(chunk).codes)
    assert torch.equal(torch.cat(ours, -1), torch.cat(theirs, -1))
    assert torch.equal(torch.cat(ours, -1), codec.encode(x).codes)  # streamed == offline
