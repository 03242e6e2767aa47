"""AudioTokenizer: encode / decode of mixed inputs, the audio_tokenizer.json spec, corpus checks, collate."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import voxtok
from voxtok.codecs.spec import codec_spec
from voxtok.tokenizers import AudioTokenizer


@pytest.fixture(scope="module")
def codec() -> voxtok.Codec:
    torch.manual_seed(0)
    return voxtok.load("mimi-12.5hz-tiny").eval()


@pytest.fixture(scope="module")
def tok(codec: voxtok.Codec) -> AudioTokenizer:
    return AudioTokenizer(codec, layout="flatten", offset=1000)


def _codes(tok: AudioTokenizer, t: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (t,), generator=gen) for k in tok.codebook_sizes]).reshape(tok.n_q, t)


def test_public_names_and_light_import() -> None:
    assert voxtok.AudioTokenizer is AudioTokenizer
    assert "AudioTokenizer" in voxtok.__all__
    code = ("import sys, voxtok\n"
            "print(sorted(m for m in ('voxtok.tokenizers', 'transformers', 'tokenizers', 'pyarrow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("preset", ["mimi-12.5hz-tiny", "dac-16khz-tiny"])  # causal; non-causal, zero padding
def test_encode_mixed_list_equals_codec_encode_item_by_item(preset: str, data_dir, tmp_path) -> None:
    torch.manual_seed(0)
    codec = voxtok.load(preset).eval()
    tok = AudioTokenizer(codec, n_q=2)
    speech, sr = voxtok.audio.read(data_dir / "LJ001-0002.flac")  # 22.05 kHz mono
    path = tmp_path / "clip.wav"
    voxtok.audio.write(path, speech[:, 5000:9000], sr)
    clip, _ = voxtok.audio.read(path)
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.standard_normal((2, 7000))).astype(np.float32)  # 44.1 kHz stereo, [C, S]
    mono16k = 0.3 * torch.randn(2345)  # a tensor at 16 kHz, given as a pair
    native = 0.3 * torch.randn(1, 999)  # at the codec's rate
    codes = tok.encode([str(path), stereo, (mono16k, 16000), native], sample_rate=[None, 44100, None, None])
    expected = [
        codec.encode(clip[None], sample_rate=sr, n_q=2),
        codec.encode(torch.from_numpy(stereo)[None], sample_rate=44100, n_q=2),
        codec.encode(mono16k[None], sample_rate=16000, n_q=2),
        codec.encode(native[None], n_q=2),
    ]
    for got, want in zip(codes, expected, strict=True):
        assert got.dtype == torch.int64 and got.shape == (2, int(want.lengths[0]))
        assert torch.equal(got, want.codes[0, :, : int(want.lengths[0])])
    # One batch per item or one for all: the same codes.
    assert all(torch.equal(a, b) for a, b in zip(tok.encode([str(path), stereo, (mono16k, 16000), native],
                                                            sample_rate=[None, 44100, None, None], batch_size=1),
                                                 codes, strict=True))


def test_encode_refuses_bad_items(tok: AudioTokenizer) -> None:
    bad = torch.zeros(1, 500)
    bad[0, 17] = float("nan")
    with pytest.raises(voxtok.AudioError, match=r"item 1: non-finite sample nan at index \[0, 17\]"):
        tok.encode([torch.zeros(1, 100) + 0.1, bad])
    with pytest.raises(ValueError, match="item 0: audio must be floating point"):
        tok.encode([np.zeros(100, dtype=np.int16)])
    with pytest.raises(ValueError, match=r"item 0: audio must be \[S\] or \[C, S\].*\(4000, 2\)"):
        tok.encode([np.zeros((4000, 2), dtype=np.float32)])
    with pytest.raises(ValueError, match="sample_rate gives 1 rates for 2 items"):
        tok.encode([torch.zeros(10), torch.zeros(10)], sample_rate=[16000])
    with pytest.raises(voxtok.AudioError, match="no such file"):
        tok.encode(["/nonexistent/file.wav"])


def test_decode_each_item_at_its_own_length(tok: AudioTokenizer, codec: voxtok.Codec) -> None:
    items = [_codes(tok, t, seed=t) for t in (7, 0, 1, 12)]
    audio = tok.decode(items)
    for c, a in zip(items, audio, strict=True):
        assert a.shape == (1, c.shape[-1] * codec.hop_length)
        if c.shape[-1]:
            torch.testing.assert_close(a, codec.decode(c[None])[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"item 1: codes\[0, 2\] = 16 is outside codebook 0's range"):
        tok.decode([items[0], torch.tensor([[0, 1, 16]] + [[0, 0, 0]] * 3)])
    with pytest.raises(ValueError, match=r"item 0: .*Q = 4.*got shape \(2, 5\)"):
        tok.decode([_codes(tok, 5)[:2]])


def test_ids_text_and_codes_agree(tok: AudioTokenizer) -> None:
    codes = _codes(tok, 9)
    for layout in ("flatten", "delay", "parallel"):
        ids = tok.to_llm_ids(codes, layout=layout, add_special=True)
        assert int(ids.min()) >= tok.offset and int(ids.max()) < tok.offset + tok.vocab_size
        assert torch.equal(tok.from_llm_ids(ids, layout=layout), codes)
        assert torch.equal(tok.from_text(tok.to_text(codes, layout=layout), layout=layout), codes)
    # `first` on a four-codebook tokenizer reads codebook 0 of its id space.
    assert torch.equal(tok.from_llm_ids(tok.to_llm_ids(codes, layout="first"), layout="first"), codes[:1])


def test_from_pretrained_takes_a_preset_name() -> None:
    tok = AudioTokenizer.from_pretrained("mimi-12.5hz-tiny", layout="parallel", n_q=2)
    assert tok.codec.name == "mimi-12.5hz-tiny" and tok.n_q == 2 and tok.layout == "parallel"


def test_first_layout_carries_one_codebook(codec: voxtok.Codec) -> None:
    tok = AudioTokenizer(codec, layout="first", offset=10)
    assert tok.n_q == 1 and tok.vocab_size == codec.codebook_sizes[0] + 3
    assert tok.encode([torch.zeros(100) + 0.1])[0].shape[0] == 1
    with pytest.raises(ValueError, match="n_q must be 1"):
        AudioTokenizer(codec, layout="first", n_q=2)
    with pytest.raises(ValueError, match="n_q must be in"):
        AudioTokenizer(codec, n_q=codec.num_codebooks + 1)


def test_save_and_load_the_spec(codec: voxtok.Codec, tmp_path) -> None:
    tok = AudioTokenizer(codec, layout="delay", n_q=3, offset=32000, delays=[0, 1, 1])
    path = tok.save_pretrained(tmp_path / "tok")
    spec = json.loads((path / "audio_tokenizer.json").read_text())
    assert spec["layout"] == "delay" and spec["offset"] == 32000 and spec["delays"] == [0, 1, 1]
    assert spec["n_q"] == 3 and spec["codebook_sizes"] == codec.codebook_sizes[:3]
    assert spec["special_ids"] == {"audio_start": 32048, "audio_end": 32049, "audio_pad": 32050}
    assert spec["codebook_offsets"] == [32000, 32016, 32032] and spec["vocab_size"] == 51
    assert spec["codec_hash"] == codec_spec(codec)["codec_hash"] and spec["voxtok_version"] == voxtok.__version__
    again = AudioTokenizer.from_pretrained(path)
    assert again.spec() == tok.spec()
    codes = _codes(tok, 6)
    assert torch.equal(again.to_llm_ids(codes), tok.to_llm_ids(codes))
    assert AudioTokenizer.from_pretrained(path, layout="delay", offset=32000).layout == "delay"
    with pytest.raises(ValueError, match=r"offset=5 \(the spec says 32000\)"):
        AudioTokenizer.from_pretrained(path, offset=5)


def test_from_pretrained_refuses_a_spec_that_does_not_match(codec: voxtok.Codec, tmp_path) -> None:
    path = AudioTokenizer(codec, offset=100).save_pretrained(tmp_path / "tok")
    spec_file = path / "audio_tokenizer.json"
    spec = json.loads(spec_file.read_text())
    # Other weights under the same spec: the hash names the mismatch.
    other = voxtok.load("mimi-12.5hz-tiny")
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1.0
    other.save_pretrained(path)
    with pytest.raises(ValueError, match=r"audio_tokenizer.json was made with a different codec.*codec_hash"):
        AudioTokenizer.from_pretrained(path)
    codec.save_pretrained(path)
    # A hand-edited id assignment is caught too.
    spec_file.write_text(json.dumps(dict(spec, special_ids={"audio_start": 1, "audio_end": 2, "audio_pad": 3})))
    with pytest.raises(ValueError, match="special_ids: expected"):
        AudioTokenizer.from_pretrained(path)
    spec_file.write_text(json.dumps(dict(spec, format_version=99)))
    with pytest.raises(ValueError, match="format_version 99"):
        AudioTokenizer.from_pretrained(path)
    spec_file.write_text(json.dumps(spec))
    assert AudioTokenizer.from_pretrained(path).offset == 100


def test_check_corpus_against_a_manifest(codec: voxtok.Codec, tmp_path) -> None:
    manifest = dict(codec_spec(codec, n_q=4), num_items=3)
    AudioTokenizer(codec, n_q=2).check_corpus(manifest)  # a corpus with more codebooks is read through a prefix
    AudioTokenizer(codec, layout="first").check_corpus(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(codec_spec(codec, n_q=1)))
    with pytest.raises(ValueError, match=r"manifest.json holds n_q=1 .*reads the first 2"):
        AudioTokenizer(codec, n_q=2).check_corpus(tmp_path)
    other = dict(manifest, codec_hash="sha256:0", sample_rate=16000)
    with pytest.raises(ValueError, match=r"codec_hash: expected 'sha256:[0-9a-f]+', found 'sha256:0'; sample_rate"):
        AudioTokenizer(codec).check_corpus(other)
    with pytest.raises(ValueError, match="not a readable manifest"):
        AudioTokenizer(codec).check_corpus(tmp_path / "missing.json")


@pytest.mark.parametrize("layout", ["flatten", "delay"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_collate_pads_and_masks(tok: AudioTokenizer, layout: str, padding_side: str) -> None:
    items = [_codes(tok, t, seed=t) for t in (5, 0, 2)]
    batch = tok.collate(items, layout=layout, padding_side=padding_side)
    lay = tok.layout_of(layout)
    assert batch.frames.tolist() == [5, 0, 2]
    assert batch.lengths.tolist() == [lay.num_steps(t, add_special=True) for t in (5, 0, 2)]
    width = int(batch.lengths.max())
    assert batch.ids.shape == ((3, tok.n_q, width) if lay.is_2d else (3, width))
    assert batch.attention_mask.dtype == torch.bool and batch.attention_mask.sum(1).tolist() == batch.lengths.tolist()
    for b, c in enumerate(items):
        row = batch.ids[b][..., batch.attention_mask[b]]
        assert torch.equal(tok.from_llm_ids(row, layout=layout), c)
        assert bool((batch.ids[b][..., ~batch.attention_mask[b]] == tok.pad_id).all())
        assert bool(batch.attention_mask[b, -1 if padding_side == "left" else 0])
    with pytest.raises(ValueError, match=r"item 1: codes\[3, 0\] = 99"):
        tok.collate([items[0], torch.tensor([[0], [0], [0], [99]])])
