"""The shared token spec: the hash follows weights and config, and a mismatch names the field."""

from __future__ import annotations

import pytest
import torch

import voxtok
from voxtok.codecs.spec import check_spec, codec_hash, codec_spec


@pytest.fixture(scope="module")
def codec() -> voxtok.Codec:
    torch.manual_seed(0)
    return voxtok.load("mimi-12.5hz-tiny").eval()


def test_hash_is_stable_and_follows_weights(codec: voxtok.Codec, tmp_path) -> None:
    h = codec_hash(codec)
    assert h == codec_hash(codec)
    again = voxtok.load(codec.save_pretrained(tmp_path / "m"))
    assert codec_hash(again) == h
    with torch.no_grad():
        next(again.parameters()).view(-1)[0] += 1e-3
    assert codec_hash(again) != h


def test_spec_fields_and_mismatch_message(codec: voxtok.Codec) -> None:
    spec = codec_spec(codec, n_q=2)
    assert spec["n_q"] == 2 and spec["codebook_sizes"] == codec.codebook_sizes[:2]
    assert spec["frame_rate"] == codec.frame_rate and spec["sample_rate"] == codec.sample_rate
    check_spec(spec, dict(spec, voxtok_version="9.9"), "same")  # the writer's version may differ
    with pytest.raises(ValueError, match=r"n_q: expected 2, found 3"):
        check_spec(spec, codec_spec(codec, n_q=3), "manifest.json")
    with pytest.raises(ValueError, match="n_q must be in"):
        codec_spec(codec, n_q=codec.num_codebooks + 1)
