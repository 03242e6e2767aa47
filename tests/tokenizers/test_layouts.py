"""Layouts: exact inverses for any Q, T and codebook sizes (hypothesis), the id space, and the errors that name
the position and value of a bad id."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxtok.tokenizers.layouts import LAYOUTS, Layout

EXAMPLES = 100  # per layout: 4 x 100 round trips and 4 x 40 chunked reads take about 6 s here
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layouts_and_codes(draw, kind: str):
    q = 1 if kind == "first" else draw(st.integers(1, 6))
    sizes = tuple(draw(st.lists(st.integers(1, 40), min_size=q, max_size=q)))
    offset = draw(st.sampled_from([0, 1, 7, 30522, 128266]))
    delays = None
    if kind == "delay" and draw(st.booleans()):  # custom delays (Moshi-style or any), the smallest 0
        delays = [draw(st.integers(0, 4)) for _ in range(q)]
        delays[draw(st.integers(0, q - 1))] = 0
    t = draw(st.sampled_from([0, 1]) | st.integers(0, 30))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    codes = torch.stack([torch.randint(0, k, (t,), generator=gen) for k in sizes]) if t else \
        torch.zeros(q, 0, dtype=torch.long)
    return Layout(kind, sizes, offset, tuple(delays) if delays is not None else None), codes


def _ids_in_chunks(ids: torch.Tensor, cuts: list[int]) -> list[torch.Tensor]:
    n = ids.shape[-1]
    bounds = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return [ids[..., a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("kind", LAYOUTS)
@SETTINGS
@given(data=st.data())
def test_round_trip_any_q_t(kind: str, data) -> None:
    layout, codes = data.draw(layouts_and_codes(kind))
    add_special = data.draw(st.booleans())
    ids = layout.to_ids(codes, add_special)
    q, t = codes.shape
    assert ids.shape[-1] == layout.num_steps(t, add_special)
    assert ids.shape[:-1] == ((q,) if layout.is_2d else ())
    # Every id lies in the layout's range; audio ids stay below the specials.
    if ids.numel():
        assert layout.offset <= int(ids.min()) and int(ids.max()) < layout.offset + layout.vocab_size
    assert layout.vocab_size == sum(layout.codebook_sizes) + 3
    assert torch.equal(layout.from_ids(ids), codes)
    # Batched codes give the items' ids stacked, and read back the same.
    batch = torch.stack([codes, codes.flip(-1)])
    assert torch.equal(layout.to_ids(batch, add_special)[1], layout.to_ids(codes.flip(-1), add_special))
    assert torch.equal(layout.from_ids(layout.to_ids(batch, add_special)), batch)


@pytest.mark.parametrize("kind", LAYOUTS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_over_any_chunking_gives_the_codes(kind: str, data) -> None:
    layout, codes = data.draw(layouts_and_codes(kind))
    ids = layout.to_ids(codes, add_special=data.draw(st.booleans()))
    reader = layout.reader()
    got = [reader.push(c) for c in _ids_in_chunks(ids, data.draw(st.lists(st.integers(0, 200), max_size=8)))]
    assert torch.equal(torch.cat(got, 1) if got else codes[:, :0], codes)
    assert reader.finish(strict=True) == 0


def test_id_space_and_delay_pattern() -> None:
    layout = Layout("delay", (4, 8, 3), offset=100)
    codes = torch.tensor([[1, 2, 3], [4, 5, 6], [0, 1, 2]])
    assert layout.codebook_offsets == (100, 104, 112)
    assert (layout.audio_start_id, layout.audio_end_id, layout.pad_id, layout.vocab_size) == (115, 116, 117, 18)
    p = layout.pad_id
    assert layout.to_ids(codes).tolist() == [
        [101, 102, 103, p, p],
        [p, 108, 109, 110, p],
        [p, p, 112, 113, 114],
    ]
    flat = Layout("flatten", (4, 8, 3), offset=100).to_ids(codes, add_special=True)
    assert flat.tolist() == [115, 101, 108, 112, 102, 109, 113, 103, 110, 114, 116]
    assert Layout("first", (4, 8, 3), offset=100).to_ids(codes).tolist() == [101, 102, 103]
    moshi = Layout("delay", (4, 8, 3), offset=100, delays=(0, 1, 1))
    assert moshi.to_ids(codes).tolist() == [[101, 102, 103, p], [p, 108, 109, 110], [p, 112, 113, 114]]


def test_bad_ids_name_position_and_value() -> None:
    layout = Layout("delay", (4, 8, 3), offset=100)
    ids = layout.to_ids(torch.tensor([[1, 2, 3], [4, 5, 6], [0, 1, 2]]))
    bad = ids.clone()
    bad[2, 1] = 112  # a code where the delay puts a pad
    with pytest.raises(ValueError, match=r"ids\[2, 1\] = 112 \(codebook 2 code 0\); expected the pad id 117"):
        layout.from_ids(bad)
    bad = ids.clone()
    bad[1, 2] = layout.pad_id  # a pad in the middle of a stream
    with pytest.raises(ValueError, match=r"ids\[1, 2\] = 117 \(audio_pad\) is misplaced"):
        layout.from_ids(bad)
    bad = ids.clone()
    bad[0, 1] = 999
    with pytest.raises(ValueError, match=r"ids\[0, 1\] = 999 \(outside the tokenizer's ids \[100, 118\)\)"):
        layout.from_ids(bad)
    with pytest.raises(ValueError, match="pads after the last frame"):
        layout.from_ids(ids[:, :-1])

    flat = Layout("flatten", (4, 8, 3), offset=100)
    ids = flat.to_ids(torch.tensor([[1, 2], [4, 5], [0, 1]]))
    bad = ids.clone()
    bad[4] = 101  # codebook 0's id where codebook 1's belongs
    with pytest.raises(ValueError, match=r"ids\[4\] = 101 \(codebook 0 code 1\); expected a codebook-1 id in \[104"):
        flat.from_ids(bad)
    bad[4] = flat.pad_id
    with pytest.raises(ValueError, match=r"ids\[4\] = 117 \(audio_pad\)"):
        flat.from_ids(bad)
    with pytest.raises(ValueError, match="inside frame 1: 2 of its 3 ids"):
        flat.from_ids(ids[:-1])
    with pytest.raises(ValueError, match=r"ids\[7\] = 116 \(audio_end\) inside frame 2"):
        flat.from_ids(torch.cat([ids, torch.tensor([101, 116])]))
    with pytest.raises(ValueError, match=r"ids\[7\] = 101 comes after audio_end"):
        flat.from_ids(torch.cat([ids, torch.tensor([116, 101])]))


def test_codes_of_another_codec_are_refused() -> None:
    layout = Layout("parallel", (16, 16), offset=5)
    with pytest.raises(ValueError, match=r"Q = 2 .* got shape \(3, 4\)"):
        layout.to_ids(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes\[1, 2\] = 16 is outside codebook 1's range \[0, 16\)"):
        layout.to_ids(torch.tensor([[0, 0, 0], [0, 0, 16]]))
    with pytest.raises(ValueError, match="integer"):
        layout.to_ids(torch.zeros(2, 3))


def test_reader_refuses_a_chunk_and_stays_usable() -> None:
    layout = Layout("delay", (4, 4), offset=0)
    ids = layout.to_ids(torch.tensor([[1, 2, 3], [0, 1, 2]]))
    reader = layout.reader()
    reader.push(ids[:, :2])
    wrong = ids[:, 2:].clone()
    wrong[0, 0] = 7  # codebook 1's id range starts at 4
    with pytest.raises(ValueError, match=r"ids\[0, 2\] = 7"):
        reader.push(wrong)
    assert torch.equal(torch.cat([reader.push(ids[:, 2:])], 1), torch.tensor([[1, 2, 3], [0, 1, 2]])[:, 1:])


def test_layout_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="layout must be one of"):
        Layout("interleave", (4,))
    with pytest.raises(ValueError, match="smallest 0"):
        Layout("delay", (4, 4), delays=(1, 2))
    with pytest.raises(ValueError, match="delays belong to the delay layout"):
        Layout("flatten", (4, 4), delays=(0, 1))
