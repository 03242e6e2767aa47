"""Every preset's tiny variant through the whole Codec API."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import voxtok
from voxtok.codecs import build, preset_config, presets

TINY = [p for p in presets() if p.endswith("-tiny")]
CAUSAL = [p for p in TINY if preset_config(p)["causal"]]

# Non-causal presets: how many trailing frames of an item may differ between a padded batch and the item alone
# (the frames whose receptive field reaches past the item's end), measured on the tiny sizes at 1e-5 on the
# latents. DM-Codec's bidirectional LSTM sees the whole padded input, but its influence decays below 1e-5 within
# about 20 frames; X-codec2's encoder gets each item's length (filterbank statistics, attention mask), and its
# convolutions reach 11-13 frames past an item's end: docs/presets.md.
NONCAUSAL_TAIL = {
    "dac-16khz-tiny": 10, "dac-24khz-tiny": 10, "dac-44khz-tiny": 10, "dmcodec-50hz-tiny": 20,
    "encodec-24khz-tiny": 0, "wavtokenizer-40hz-tiny": 4, "wavtokenizer-75hz-tiny": 4, "xcodec2-50hz-tiny": 14,
    "stft-fsq-50hz-tiny": 8,
}  # fmt: skip


@pytest.fixture(scope="module")
def codecs() -> dict[str, voxtok.Codec]:
    torch.manual_seed(0)
    return {name: build(name).eval() for name in TINY}


def test_every_family_has_a_full_and_a_tiny_preset() -> None:
    full = {p for p in presets() if not p.endswith("-tiny")}
    assert {p.removesuffix("-tiny") for p in TINY} == full
    for name in ("wavtokenizer-75hz", "wavtokenizer-40hz", "dmcodec-50hz", "cat-12.5hz", "mimi-12.5hz",
                 "xcodec2-50hz", "dac-16khz", "dac-24khz", "dac-44khz", "encodec-24khz",
                 "lmspt-25hz", "lmspt-12.5hz", "lmspt-6.25hz"):
        assert name in full


@pytest.mark.parametrize("name", ["wavtokenizer-75hz", "mimi-12.5hz", "dac-44khz", "xcodec2-50hz", "lmspt-6.25hz"])
def test_full_presets_frame_facts(name: str) -> None:
    # Frame facts come from the config alone (no need to build the large model).
    cfg = preset_config(name)
    expected = {"wavtokenizer-75hz": (24000, 75.0), "mimi-12.5hz": (24000, 12.5), "dac-44khz": (44100, 44100 / 512),
                "xcodec2-50hz": (16000, 50.0), "lmspt-6.25hz": (24000, 6.25)}[name]
    from voxtok.codecs.parts import build_part

    enc = build_part(cfg["encoder"]) if name != "xcodec2-50hz" else None
    hop = enc.hop_length if enc is not None else 320
    assert (cfg["sample_rate"], cfg["sample_rate"] / hop) == pytest.approx(expected)


# The published operating points (frames per second, codebooks x size, kbps): WavTokenizer, DM-Codec, CAT (MOSS-
# Audio-Tokenizer's rates), Mimi and its LM-SPT-style variants, X-codec2, DAC (16 / 24 / 44.1 kHz models) and
# EnCodec 24 kHz at its 24 kbps maximum.
PUBLISHED = {
    "wavtokenizer-75hz": (75, 1, 4096, 0.9), "wavtokenizer-40hz": (40, 1, 4096, 0.48),
    "dmcodec-50hz": (50, 8, 1024, 4.0), "cat-12.5hz": (12.5, 32, 1024, 4.0), "mimi-12.5hz": (12.5, 8, 2048, 1.1),
    "lmspt-25hz": (25, 8, 2048, 2.2), "lmspt-12.5hz": (12.5, 8, 2048, 1.1), "lmspt-6.25hz": (6.25, 8, 2048, 0.55),
    "xcodec2-50hz": (50, 1, 65536, 0.8), "dac-16khz": (50, 12, 1024, 6.0), "dac-24khz": (75, 32, 1024, 24.0),
    "dac-44khz": (44100 / 512, 9, 1024, 7.75), "encodec-24khz": (75, 32, 1024, 24.0),
    "stft-fsq-50hz": (50, 4, 32768, 3.0),
}  # fmt: skip


def test_full_presets_have_their_published_bitrates() -> None:
    from voxtok.codecs import Codec

    assert set(PUBLISHED) == {p.removesuffix("-tiny") for p in TINY}
    for name, (rate, q, k, kbps) in PUBLISHED.items():
        with torch.device("meta"):  # no weights: the frame facts only
            c = Codec.from_config(preset_config(name))
        assert (c.frame_rate, c.num_codebooks, c.codebook_size) == (pytest.approx(rate), q, k), name
        assert c.bitrate / 1000 == pytest.approx(kbps, abs=0.005), name


@pytest.mark.parametrize("name", TINY)
def test_encode_decode_shapes_and_bitrate(codecs, name: str) -> None:
    c = codecs[name]
    x = torch.randn(2, 1, 1000) * 0.1
    tok = c.encode(x, lengths=torch.tensor([1000, 613]))
    t = math.ceil(1000 / c.hop_length)
    assert tok.codes.shape == (2, c.num_codebooks, t) and tok.codes.dtype == torch.int64
    assert tok.lengths.tolist() == [t, math.ceil(613 / c.hop_length)]
    assert tok.frame_rate == c.sample_rate / c.hop_length
    assert (tok.codes >= 0).all() and (tok.codes < c.codebook_size).all()
    y = c.decode(tok)
    assert y.shape == (2, 1, 1000) and torch.isfinite(y).all()
    assert (y[1, 0, 613:] == 0).all()
    for n in (1, c.hop_length - 1, c.hop_length + 1, 3 * c.hop_length):
        assert c.decode(c.encode(torch.randn(n) * 0.1)).shape[-1] == n


@pytest.mark.parametrize("name", TINY)
def test_batch_equals_single(codecs, name: str) -> None:
    c = codecs[name]
    # 80, 45 and 30 frames and a partial one: every item has frames before its tail, whatever the hop.
    lengths = [f * c.hop_length + r for f, r in ((80, 7), (45, 3), (30, 1))]
    items = [torch.randn(n) * 0.1 for n in lengths]
    batch = torch.zeros(3, 1, lengths[0])
    for i, it in enumerate(items):
        batch[i, 0, : len(it)] = it
    latents = c.encode_latents(batch, lengths=torch.tensor(lengths))
    tok = c.encode(batch, lengths=torch.tensor(lengths))
    tail = 0 if c.causal else NONCAUSAL_TAIL[name]
    for i, it in enumerate(items):
        alone = c.encode_latents(it)[0]
        n = alone.shape[-1]
        keep = n - tail
        assert keep >= 5, (name, n, tail)
        torch.testing.assert_close(latents[i, :, :keep], alone[:, :keep], atol=1e-5, rtol=0)
        if c.causal:
            assert torch.equal(tok.codes[i, :, :n], c.encode(it).codes[0])


@pytest.mark.parametrize("name", TINY)
def test_save_load_round_trip(codecs, name: str, tmp_path: Path) -> None:
    c = codecs[name]
    x = torch.randn(1, 1, 700) * 0.1
    c.save_pretrained(tmp_path)
    loaded = voxtok.load(tmp_path)
    a, b = c.encode(x), loaded.encode(x)
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(c.decode(a), loaded.decode(b))


@pytest.mark.parametrize("name", CAUSAL)
def test_streaming_equals_offline(codecs, name: str) -> None:
    c = codecs[name]
    hop = c.hop_length
    x = torch.randn(2, 1, 30 * hop) * 0.1
    offline = c.encode(x).codes
    offline_audio = c.decode(offline)
    codes, audio, pos = [], [], 0
    with c.streaming(2):
        for n in (1, 3, 2, 10, 14):
            tok = c.encode(x[..., pos * hop : (pos + n) * hop])
            pos += n
            codes.append(tok.codes)
            audio.append(c.decode(tok.codes))
        with pytest.raises(ValueError, match="whole number of frames"):
            c.encode(x[..., : hop + 1])
    assert torch.equal(torch.cat(codes, -1), offline)
    torch.testing.assert_close(torch.cat(audio, -1), offline_audio, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["mimi-12.5hz-tiny", "dac-16khz-tiny"])
def test_bad_input_and_silence(codecs, name: str) -> None:
    c = codecs[name]
    with pytest.raises(voxtok.AudioError, match="empty"):
        c.encode(torch.zeros(1, 0))
    with pytest.raises(voxtok.AudioError, match="non-finite"):
        c.encode(torch.tensor([0.1, float("nan"), 0.2]))
    silence = c.decode(c.encode(torch.zeros(1, 1, 500)))
    assert silence.shape == (1, 1, 500) and torch.isfinite(silence).all()
    with pytest.raises(ValueError, match="in codebook 0"):
        c.decode(torch.full((1, c.num_codebooks, 3), c.codebook_size, dtype=torch.long))


@pytest.mark.parametrize("name", ["mimi-12.5hz-tiny", "wavtokenizer-75hz-tiny"])
def test_chunked_long_input_matches_one_pass(name: str) -> None:
    torch.manual_seed(0)
    c = build(name).eval()
    x = torch.randn(1, 1, 240 * c.hop_length + 5) * 0.1
    whole = c.encode(x).codes
    c.chunk_seconds = 40 * c.hop_length / c.sample_rate  # 40-frame chunks
    c.context_seconds = 20 * c.hop_length / c.sample_rate
    chunked = c.encode(x).codes
    assert chunked.shape == whole.shape
    assert torch.equal(chunked, whole)  # causal: exact; wavtokenizer-tiny: its receptive field fits the context


def test_one_hour_input_encodes_in_bounded_memory() -> None:
    import subprocess
    import sys

    # The mimi tiny preset with Mimi's real strides (25 Hz before the 2x step), so one hour is 45000 frames.
    code = (
        "import torch\n"
        "from voxtok.codecs import Codec, preset_config\n"
        "cfg = preset_config('mimi-12.5hz-tiny')\n"
        "cfg['encoder']['args']['stages'][0]['args']['ratios'] = [4, 5, 6, 8]\n"
        "cfg['decoder']['args']['stages'][-1]['args']['ratios'] = [8, 6, 5, 4]\n"
        "c = Codec.from_config(cfg).eval()\n"
        "x = torch.randn(1, 1, 3600 * c.sample_rate) * 0.05\n"
        "def hwm():  # VmHWM in MiB: this process's own peak (ru_maxrss would carry pytest's over execve)\n"
        "    return next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "before = hwm()\n"
        "tok = c.encode(x)\n"
        "print(tok.codes.shape[-1], hwm() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    frames, extra_mb = int(out[0]), int(out[1])
    assert frames == 3600 * 25 // 2
    # The input alone is 330 MB; without chunking the first conv layer's output would be 1.4 GB.
    assert extra_mb < 1000, f"encoding one hour grew the peak RSS by {extra_mb} MB"


@pytest.mark.parametrize(
    "name", ["mimi-12.5hz-tiny", "cat-12.5hz-tiny", "dac-16khz-tiny", "wavtokenizer-75hz-tiny", "xcodec2-50hz-tiny"]
)
def test_bf16_autocast(codecs, name: str) -> None:
    # Half precision runs the parts under autocast; quantizers compute in fp32 inside, so codes barely move.
    c = codecs[name]
    x = torch.randn(2, 1, 900) * 0.1
    ref = c.encode(x).codes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tok = c.encode(x)
        y = c.decode(tok)
    assert tok.codes.shape == ref.shape and y.shape == (2, 1, 900) and torch.isfinite(y.float()).all()
    assert (tok.codes == ref).float().mean() > 0.9
