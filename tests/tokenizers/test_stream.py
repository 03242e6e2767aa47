"""decode_stream: ids pushed in any chunks give the audio of offline decode (causal codec), in every layout."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voxtok
from voxtok.tokenizers import AudioTokenizer
from voxtok.tokenizers.layouts import LAYOUTS

EXAMPLES = 25  # per layout; each example decodes up to 40 frames through the codec


@pytest.fixture(scope="module")
def codec() -> voxtok.Codec:
    torch.manual_seed(0)
    codec = voxtok.load("mimi-12.5hz-tiny").eval()
    assert codec.causal
    return codec


def _codes(tok: AudioTokenizer, t: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (t,), generator=gen) for k in tok.codebook_sizes]).reshape(tok.n_q, t)


def _chunks(ids: torch.Tensor, cuts: list[int]) -> list[torch.Tensor]:
    n = ids.shape[-1]
    bounds = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return [ids[..., a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=st.sampled_from([0, 1]) | st.integers(0, 40), seed=st.integers(0, 2**31 - 1),
       cuts=st.lists(st.integers(0, 400), max_size=12), frames_per_chunk=st.integers(1, 6),
       add_special=st.booleans())
def test_stream_over_random_chunkings_equals_offline_decode(
    codec: voxtok.Codec, layout: str, t: int, seed: int, cuts: list[int], frames_per_chunk: int, add_special: bool
) -> None:
    delays = [0, 1, 1, 1] if layout == "delay" and seed % 2 else None  # MusicGen's delays, or Moshi's
    tok = AudioTokenizer(codec, layout=layout, offset=1000, delays=delays)
    codes = _codes(tok, t, seed)
    offline = tok.decode([codes])[0]
    ids = tok.to_llm_ids(codes, add_special=add_special)
    stream = tok.decode_stream(frames_per_chunk=frames_per_chunk)
    pieces = []
    for chunk in _chunks(ids, cuts):
        got = stream.push(chunk)
        assert all(p.shape[-1] == frames_per_chunk * codec.hop_length for p in got[:-1])
        pieces += got
    pieces.append(stream.flush())
    audio = torch.cat(pieces, -1)
    assert audio.shape == offline.shape
    torch.testing.assert_close(audio, offline, atol=1e-5, rtol=0)
    assert not codec.is_streaming


def test_stream_emits_each_frame_as_soon_as_it_is_complete(codec: voxtok.Codec) -> None:
    tok = AudioTokenizer(codec, layout="delay")  # delays 0, 1, 2, 3: frame t is complete at step t + 3
    codes = _codes(tok, 6, seed=1)
    ids = tok.to_llm_ids(codes, add_special=True)
    hop = codec.hop_length
    with tok.decode_stream() as stream:
        sizes = [sum(p.shape[-1] for p in stream.push(ids[:, s])) // hop for s in range(ids.shape[1])]
        # start column, three steps of delay, then one frame per step; audio_end brings nothing new.
        assert sizes == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
        assert stream.ended and stream.frames == 6 and stream.flush().shape == (1, 0)


def test_stream_refuses_non_causal_codecs_by_name() -> None:
    tok = AudioTokenizer(voxtok.load("dac-16khz-tiny"))
    with pytest.raises(ValueError, match="decode_stream needs a causal codec; dac-16khz-tiny is not causal"):
        tok.decode_stream()


def test_stream_bad_ids_name_position_and_leave_the_stream_usable(codec: voxtok.Codec) -> None:
    tok = AudioTokenizer(codec, layout="flatten", offset=1000)
    codes = _codes(tok, 5, seed=2)
    ids = tok.to_llm_ids(codes, add_special=True)
    stream = tok.decode_stream()
    out = stream.push(ids[:6])  # audio_start, then frame 0 and one id of frame 1
    with pytest.raises(ValueError, match=r"ids\[6\] = 5000 \(outside the tokenizer's ids \[1000, 1067\)\)"):
        stream.push(torch.tensor([5000]))
    with pytest.raises(ValueError, match=r"ids\[6\] = 1066 \(audio_pad\); expected a codebook-1 id"):
        stream.push([tok.pad_id])
    out += stream.push(ids[6:])
    assert stream.ended
    with pytest.raises(ValueError, match=r"ids\[22\] = 1000 comes after audio_end"):
        stream.push([1000])
    out.append(stream.flush())
    torch.testing.assert_close(torch.cat(out, -1), tok.decode([codes])[0], atol=1e-5, rtol=0)


def test_delay_stream_with_a_misplaced_pad(codec: voxtok.Codec) -> None:
    tok = AudioTokenizer(codec, layout="delay")
    ids = tok.to_llm_ids(_codes(tok, 8, seed=3))
    ids[2, 5] = tok.pad_id  # a pad inside codebook 2's stream (frame 3)
    stream = tok.decode_stream()
    stream.push(ids[:, :4])
    with pytest.raises(ValueError, match=r"ids\[2, 5\] = 66 \(audio_pad\) is misplaced: it ends every stream at "
                                         r"frame 3, but ids\[0, 3\] already holds codebook 0's code for frame 3"):
        stream.push(ids[:, 4:])
    # Offline, the same pad is caught within one chunk.
    with pytest.raises(ValueError, match=r"ids\[2, 5\] = 66 \(audio_pad\) is misplaced: it ends every stream at "
                                         r"frame 3, but ids\[0, 3\] = \d+ \(codebook 0 code \d+\) comes before it"):
        tok.from_llm_ids(ids)
    stream.close()


def test_flush_drops_an_incomplete_frame_and_the_codec_is_locked_meanwhile(codec: voxtok.Codec, caplog) -> None:
    tok = AudioTokenizer(codec, layout="flatten")
    codes = _codes(tok, 4, seed=4)
    ids = tok.to_llm_ids(codes)
    stream = tok.decode_stream(frames_per_chunk=2)
    pieces = stream.push(ids[:-1])  # an LM stopped one id short of the last frame
    assert codec.is_streaming
    with pytest.raises(RuntimeError, match="flush"):
        tok.decode([codes])
    with caplog.at_level(logging.WARNING, logger="voxtok"):
        pieces.append(stream.flush())
    assert "dropped 1 incomplete frame" in caplog.text
    assert not codec.is_streaming
    torch.testing.assert_close(torch.cat(pieces, -1), tok.decode([codes[:, :3]])[0], atol=1e-5, rtol=0)
    # The stream starts afresh after flush: the same ids give the same audio again.
    again = stream.push(ids) + [stream.flush()]
    torch.testing.assert_close(torch.cat(again, -1), tok.decode([codes])[0], atol=1e-5, rtol=0)
