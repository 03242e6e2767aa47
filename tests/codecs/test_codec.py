"""The Codec plumbing (lengths, resampling, validation, chunking, streaming, save/load) on toy parts.

The toy parts are deliberately trivial and defined here, so these tests pin the Codec's own behaviour
independently of the real encoders and quantizers (the presets' tests cover those).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import voxtok
from voxtok.codecs import Codec, build_part, register_part
from voxtok.models.base import Decoder, Encoder
from voxtok.types import QuantizerOutput

HOP = 4


class ToyEncoder(Encoder):
    """Causal: frame t = mean of samples [t*hop, (t+1)*hop) projected to dim, plus the previous frame's
    first sample (state carried across chunks when streaming) to make streaming non-trivial."""

    def __init__(self, dim: int = 3, hop: int = HOP, causal: bool = True) -> None:
        super().__init__()
        self.channels, self.dimension, self.hop_length, self.causal = 1, dim, hop, causal
        self.proj = nn.Linear(hop, dim)

    def output_length(self, input_length: int) -> int:
        return -(-input_length // self.hop_length)

    def init_streaming_state(self, batch_size: int) -> dict:
        return {"prev": torch.zeros(batch_size, 1)}

    def forward(self, audio: Tensor) -> Tensor:
        b, c, s = audio.shape
        if c != 1:
            raise ValueError(f"expected 1 channel, got {c}")
        t = self.output_length(s)
        x = nn.functional.pad(audio[:, 0], (0, t * self.hop_length - s)).reshape(b, t, self.hop_length)
        first = x[:, :, 0]
        if self.causal:
            prev0 = self.streaming_state["prev"] if self.is_streaming else audio.new_zeros(b, 1)
            prev = torch.cat([prev0, first[:, :-1]], dim=1)
            if self.is_streaming:
                self.streaming_state["prev"] = first[:, -1:].clone()
        else:  # looks one frame ahead
            prev = torch.cat([first[:, 1:], audio.new_zeros(b, 1)], dim=1)
        return (self.proj(x) + prev[..., None]).transpose(1, 2)


class ToyDecoder(Decoder):
    def __init__(self, dim: int = 3, hop: int = HOP) -> None:
        super().__init__()
        self.channels, self.dimension, self.hop_length = 1, dim, hop
        self.proj = nn.Linear(dim, hop)

    def output_length(self, input_length: int) -> int:
        return input_length * self.hop_length

    def forward(self, latents: Tensor) -> Tensor:
        b, _, t = latents.shape
        return torch.tanh(self.proj(latents.transpose(1, 2))).reshape(b, 1, t * self.hop_length)


class ToyQuantizer(nn.Module):
    """Rounds each latent channel onto K integer levels: Q = dim codebooks of size K."""

    def __init__(self, dim: int = 3, levels: int = 8) -> None:
        super().__init__()
        self.dim, self.num_codebooks, self.codebook_size = dim, dim, levels

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        codes = (z * 2).round().clamp(-(self.codebook_size // 2), self.codebook_size // 2 - 1) + self.codebook_size // 2
        return codes.long()[:, : n_q or self.num_codebooks]

    def decode(self, codes: Tensor) -> Tensor:
        z = (codes.float() - self.codebook_size // 2) / 2
        return nn.functional.pad(z, (0, 0, 0, self.dim - codes.shape[1]))

    def forward(self, z: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        zq = self.decode(self.encode(z))
        return QuantizerOutput(z + (zq - z).detach(), self.encode(z), ((zq - z) ** 2).mean(), {})


class ToyLengthsEncoder(ToyEncoder):
    """Non-causal, takes lengths: each frame minus the mean of the item's own valid frames (per-item statistics,
    as X-codec2's filterbank normalisation)."""

    takes_lengths = True

    def __init__(self, dim: int = 3, hop: int = HOP) -> None:
        super().__init__(dim, hop, causal=False)

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        z = super().forward(audio)
        t = z.shape[-1]
        n = torch.full((z.shape[0],), t) if lengths is None else (lengths + self.hop_length - 1) // self.hop_length
        valid = (torch.arange(t)[None, :] < n[:, None]).to(z.dtype)[:, None, :]
        return z - (z * valid).sum(-1, keepdim=True) / n[:, None, None]


for _cls in (ToyEncoder, ToyDecoder, ToyQuantizer, ToyLengthsEncoder):
    register_part(_cls.__name__, _cls)


def make_codec(causal: bool = True, **kw) -> Codec:
    return Codec(
        build_part({"class": "ToyEncoder", "args": {"causal": causal}}),
        build_part({"class": "ToyQuantizer", "args": {}}),
        build_part({"class": "ToyDecoder", "args": {}}),
        sample_rate=16000,
        causal=causal,
        name="toy",
        **kw,
    ).eval()


def test_frame_facts() -> None:
    c = make_codec()
    assert c.hop_length == HOP and c.frame_rate == 4000.0
    assert c.num_codebooks == 3 and c.codebook_size == 8
    assert c.bitrate == pytest.approx(4000.0 * 3 * 3)
    assert c.encoded_length(9) == 3 and c.encoded_length(8) == 2
    assert c.encoded_length(torch.tensor([1, 4, 5])).tolist() == [1, 1, 2]


@pytest.mark.parametrize("shape", [(37,), (2, 37), (2, 1, 37)])
def test_encode_decode_shapes(shape) -> None:
    c = make_codec()
    x = torch.rand(shape) - 0.5
    tok = c.encode(x)
    b = 1 if len(shape) == 1 else 2
    assert tok.codes.shape == (b, 3, 10) and tok.codes.dtype == torch.int64
    assert tok.lengths.tolist() == [10] * b and tok.audio_lengths.tolist() == [37] * b
    y = c.decode(tok)
    assert y.shape == (b, 1, 37)
    assert c.decode(tok.codes).shape == (b, 1, 40)


def test_multichannel_is_mixed_to_mono() -> None:
    c = make_codec()
    x = torch.rand(1, 2, 40) - 0.5
    assert torch.equal(c.encode(x).codes, c.encode(x.mean(1, keepdim=True)).codes)


def test_other_sample_rate_is_resampled() -> None:
    c = make_codec()
    x = torch.rand(1, 1, 800) - 0.5
    tok = c.encode(x, sample_rate=8000)
    assert tok.audio_lengths.tolist() == [1600] and tok.codes.shape[-1] == 400
    ref = c.encode(voxtok.audio.resample(x, 8000, 16000))
    assert torch.equal(tok.codes, ref.codes)


@pytest.mark.parametrize("causal", [True, False])
def test_batch_equals_single(causal: bool) -> None:
    c = make_codec(causal=causal)
    lengths = [37, 20, 9]
    items = [torch.rand(n) - 0.5 for n in lengths]
    batch = torch.zeros(3, 1, 37)
    for i, it in enumerate(items):
        batch[i, 0, : len(it)] = it
    batch[1, 0, 20:] = 0.7  # garbage in the padding must not matter
    tok = c.encode(batch, lengths=torch.tensor(lengths))
    assert tok.lengths.tolist() == [10, 5, 3]
    audio = c.decode(tok)
    for i, it in enumerate(items):
        alone = c.encode(it)
        n = tok.lengths[i]
        assert torch.equal(tok.codes[i, :, :n], alone.codes[0])
        assert torch.equal(audio[i, 0, : len(it)], c.decode(alone)[0, 0])
        assert (audio[i, 0, len(it) :] == 0).all()


def test_n_q_prefix() -> None:
    c = make_codec()
    x = torch.rand(1, 40) - 0.5
    full, two = c.encode(x), c.encode(x, n_q=2)
    assert two.codes.shape[1] == 2 and torch.equal(two.codes, full.codes[:, :2])
    assert c.decode(two).shape == (1, 1, 40)
    with pytest.raises(ValueError, match=r"n_q must be in \[1, 3\]; got 4"):
        c.encode(x, n_q=4)


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(1, 0), "empty audio"),
    (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), "item 0: non-finite sample nan"),
    (torch.tensor([[0.0, 0.0], [0.0, float("inf")]]), "item 1: non-finite sample inf"),
])
def test_bad_audio(bad: Tensor, match: str) -> None:
    with pytest.raises(voxtok.AudioError, match=match):
        make_codec().encode(bad)


def test_nan_in_padding_is_ignored_and_silence_works() -> None:
    c = make_codec()
    x = torch.zeros(2, 1, 16)
    x[1, 0, 8:] = float("nan")
    tok = c.encode(x, lengths=torch.tensor([16, 8]))
    assert tok.lengths.tolist() == [4, 2]
    assert torch.isfinite(c.decode(tok)).all()


def test_bad_codes() -> None:
    c = make_codec()
    codes = torch.zeros(1, 3, 5, dtype=torch.long)
    codes[0, 1, 2] = 8
    with pytest.raises(ValueError, match=r"codes must be in \[0, 8\); got 8 in codebook 1"):
        c.decode(codes)
    codes[0, 1, 2] = -1
    with pytest.raises(ValueError, match="got -1 in codebook 1"):
        c.decode(codes)
    with pytest.raises(ValueError, match="dtype torch.float32"):
        c.decode(torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="has 3 codebooks|this codec has 3"):
        c.decode(torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, Q, T\]"):
        c.decode(torch.zeros(3, 5, dtype=torch.long))


def test_dims_and_hops_must_fit() -> None:
    with pytest.raises(ValueError, match="dims must fit"):
        Codec(ToyEncoder(dim=4), ToyQuantizer(dim=3), ToyDecoder(dim=3), 16000)
    with pytest.raises(ValueError, match="hops must fit"):
        Codec(ToyEncoder(hop=4), ToyQuantizer(), ToyDecoder(hop=8), 16000)


@pytest.mark.parametrize("causal", [True, False])
def test_chunked_encoding_of_long_input(causal: bool) -> None:
    # chunk of 0.001 s = 16 samples = 4 frames; 2 frames of context for the non-causal windows
    c = make_codec(causal=causal, chunk_seconds=0.001, context_seconds=0.0005)
    x = torch.rand(2, 1, 203) - 0.5
    whole = make_codec(causal=causal)
    whole.load_state_dict(c.state_dict())
    a, b = c.encode(x).codes, whole.encode(x).codes
    assert a.shape == b.shape == (2, 3, 51)
    assert torch.equal(a, b)  # the toy non-causal encoder looks one frame ahead: within the context


def test_chunked_encoding_passes_each_window_its_items_lengths() -> None:
    # A padded batch with one long item (chunked into 3 windows) and a short one inside the first window: an
    # encoder with per-item statistics must see each item's own samples in every window, so the short item's
    # codes equal the unchunked path's, and the long item's equal its own chunked encoding alone.
    def codec(**kw) -> Codec:
        torch.manual_seed(0)
        enc = build_part({"class": "ToyLengthsEncoder", "args": {}})
        return Codec(enc, ToyQuantizer(), ToyDecoder(), sample_rate=16000, **kw).eval()

    chunked = codec(chunk_seconds=0.004, context_seconds=0.001)  # 16-frame windows, 4 frames of context
    whole = codec()
    x = torch.zeros(2, 1, 4 * 44)
    x[0] = torch.rand(1, 4 * 44) - 0.5
    x[1, :, :4 * 7 - 1] = torch.rand(1, 4 * 7 - 1) - 0.5
    lengths = torch.tensor([4 * 44, 4 * 7 - 1])
    short = whole.encode_latents(x, lengths)[1, :, :7]
    torch.testing.assert_close(chunked.encode_latents(x, lengths)[1, :, :7], short, rtol=0, atol=1e-6)
    assert torch.equal(chunked.encode(x, lengths).codes[1, :, :7], whole.encode(x, lengths).codes[1, :, :7])
    assert torch.equal(chunked.encode(x, lengths).codes[0], chunked.encode(x[:1]).codes[0])
    # and the chunking really happened: the long item's windows are normalised on their own
    assert not torch.allclose(chunked.encode_latents(x[:1])[0], whole.encode_latents(x[:1])[0])


def test_streaming_equals_offline() -> None:
    c = make_codec()
    x = torch.rand(2, 1, 48) - 0.5
    offline = c.encode(x).codes
    offline_audio = c.decode(offline)
    chunks, audio = [], []
    with c.streaming(2):
        for start, n in ((0, 8), (8, 4), (12, 36)):
            tok = c.encode(x[..., start : start + n])
            chunks.append(tok.codes)
            audio.append(c.decode(tok.codes))
        with pytest.raises(ValueError, match="whole number of frames"):
            c.encode(x[..., :6])
    assert torch.equal(torch.cat(chunks, -1), offline)
    torch.testing.assert_close(torch.cat(audio, -1), offline_audio, atol=1e-5, rtol=0)
    # leaving the context reset the state: a new stream starts from scratch
    with c.streaming(2):
        assert torch.equal(c.encode(x[..., :8]).codes, offline[..., :2])
    with pytest.raises(ValueError, match="needs a causal codec"):
        with make_codec(causal=False).streaming(1):
            pass


def test_save_load_round_trip(tmp_path: Path) -> None:
    # Every Codec setting off its default, so a setting that config() drops comes back different.
    c = Codec(
        build_part({"class": "ToyEncoder", "args": {"causal": True}}),
        build_part({"class": "ToyQuantizer", "args": {}}),
        build_part({"class": "ToyDecoder", "args": {}}),
        sample_rate=22050, channels=1, causal=True, name="toy", chunk_seconds=7.5, context_seconds=0.25,
    ).eval()  # fmt: skip
    x = torch.rand(2, 1, 40) - 0.5
    c.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["voxtok_version"] == voxtok.__version__ and cfg["name"] == "toy"
    assert cfg["encoder"] == {"class": "ToyEncoder", "args": {"causal": True}}
    loaded = voxtok.load(tmp_path / "m")
    assert loaded.config() == c.config() == cfg
    facts = ("sample_rate", "channels", "causal", "name", "chunk_seconds", "context_seconds", "hop_length")
    assert {k: getattr(loaded, k) for k in facts} == {
        "sample_rate": 22050, "channels": 1, "causal": True, "name": "toy", "chunk_seconds": 7.5,
        "context_seconds": 0.25, "hop_length": HOP,
    }  # fmt: skip
    assert torch.equal(loaded.encode(x).codes, c.encode(x).codes)
    assert torch.equal(loaded.decode(c.encode(x)), c.decode(c.encode(x)))


def test_load_errors(tmp_path: Path) -> None:
    c = make_codec()
    d = c.save_pretrained(tmp_path / "m")
    weights = d / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Codec.from_pretrained(d)
    weights.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Codec.from_pretrained(d)
    weights.write_bytes(good)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99 is newer"):
        Codec.from_pretrained(d)
    (d / "config.json").write_text(json.dumps({**cfg, "encoder": {"class": "ToyEncoder", "args": {"dim": 5}},
                                               "quantizer": {"class": "ToyQuantizer", "args": {"dim": 5}},
                                               "decoder": {"class": "ToyDecoder", "args": {"dim": 5}}}))
    with pytest.raises(ValueError, match=r"tensor \w+.proj.weight has shape \(\d, \d\), expected \(\d, \d\)"):
        Codec.from_pretrained(d)
    (d / "config.json").write_text(json.dumps({**cfg, "encoder": {"class": "os.system", "args": {}}}))
    with pytest.raises(ValueError, match="unknown part class 'os.system'"):
        Codec.from_pretrained(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing model.safetensors"):
        Codec.from_pretrained(d)
    with pytest.raises(ValueError, match="neither a saved codec directory nor a preset"):
        voxtok.load(tmp_path / "nothing-here")


def test_unsaveable_parts_say_why() -> None:
    c = Codec(ToyEncoder(), ToyQuantizer(), ToyDecoder(), 16000)
    with pytest.raises(ValueError, match="was not built with voxtok.codecs.build_part"):
        c.config()


def test_forward_for_training() -> None:
    c = make_codec().train()
    x = torch.rand(2, 1, 37) - 0.5
    out = c(x, lengths=torch.tensor([37, 10]))
    assert out.audio.shape == x.shape and out.latents.shape == (2, 3, 10)
    assert out.mask.tolist()[1] == [True] * 3 + [False] * 7
    out.audio.sum().backward()
    assert c.encoder.proj.weight.grad is not None and math.isfinite(c.encoder.proj.weight.grad.sum().item())


def test_cli_encode_decode(tmp_path: Path, capsys) -> None:
    import numpy as np

    from voxtok.cli import main

    model = make_codec().save_pretrained(tmp_path / "m")
    wav = tmp_path / "in.wav"
    x = (torch.rand(1, 800) - 0.5) * 0.5
    voxtok.audio.write(wav, x, 8000)
    assert main(["encode", str(model), str(wav), str(tmp_path / "t.npz")]) == 0
    with np.load(tmp_path / "t.npz", allow_pickle=False) as f:
        assert f["codes"].shape == (3, 400) and int(f["audio_length"]) == 1600 and float(f["frame_rate"]) == 4000
        assert str(f["model"]) == str(model)
    assert main(["decode", str(model), str(tmp_path / "t.npz"), str(tmp_path / "out.wav")]) == 0
    y, sr = voxtok.audio.read(tmp_path / "out.wav")
    assert sr == 16000 and y.shape == (1, 1600)
    (tmp_path / "bad.wav").write_text("not audio")
    assert main(["encode", str(model), str(tmp_path / "bad.wav"), str(tmp_path / "x.npz")]) == 1
    assert "bad.wav: not readable as audio" in capsys.readouterr().err


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=4), rate=st.sampled_from([None, 8000, 22050]))
def test_decode_restores_every_length(lengths: list[int], rate: int | None) -> None:
    c = make_codec()
    batch = torch.zeros(len(lengths), 1, max(lengths))
    for i, n in enumerate(lengths):
        batch[i, 0, :n] = torch.rand(n) - 0.5
    tok = c.encode(batch, lengths=torch.tensor(lengths), sample_rate=rate)
    expected = [n if rate is None else voxtok.audio.resampled_length(n, rate, 16000) for n in lengths]
    assert tok.audio_lengths.tolist() == [max(1, e) for e in expected]
    y = c.decode(tok)
    assert y.shape == (len(lengths), 1, max(tok.audio_lengths.tolist()))
    for i, n in enumerate(tok.audio_lengths.tolist()):  # zero past each item's own length
        assert (y[i, 0, n:] == 0).all()


@pytest.mark.gpu
def test_encode_decode_on_cuda() -> None:
    c = make_codec().cuda()
    x = torch.rand(2, 1, 40) - 0.5
    tok = c.encode(x)  # CPU audio follows the codec to its device
    assert tok.codes.device.type == "cuda"
    assert c.decode(tok).shape == (2, 1, 40)
