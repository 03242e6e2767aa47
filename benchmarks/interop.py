"""Encode / decode speed of converted published codecs in voxtok beside their original implementations.

Each row builds the original model at its published size with random weights (nothing is downloaded; codebooks
filled on the scale of the latents they quantize), converts it with ``voxtok.codecs.convert`` (through the
same files a user converts: ``save_pretrained`` directory or safetensors), and times the same input through both:
voxtok's ``Codec.encode`` / ``Codec.decode`` (the user-facing calls, validation included) and the original's
``encode`` / ``decode``. Both run under ``torch.inference_mode`` on 2 CPU threads, alternated within one process;
the table gives the median wall time of the repeats, the speed-up (original / voxtok) by median wall time
and by median CPU time, and checks that the codes are identical. The last two columns count voxtok's matmul /
convolution FLOPs per call (``benchmarks/_roofline.py``) and give the ceiling: the speed-up over the original of
an implementation running at this CPU's measured fp32 GEMM peak.

Rows: transformers EnCodec 24 kHz (32 codebooks), DAC 44.1 kHz (9), Mimi (32), X-codec2 (encode includes making
the filterbank features on both sides; transformers' feature extractor needs torchaudio, and without it the
original X-codec2 recipe with SeamlessM4T's numpy features stands in), and moshi's Mimi (when moshi is installed).
The ``dac`` (.pth) kind loads the same network as ``hf-dac``; its original implementation (descript-audio-codec)
is not installed here, so it has no row of its own.

Usage: ``python benchmarks/interop.py`` (5 s of audio, 3 repeats) or ``--quick`` (1 s, 2 repeats, no DAC or X-codec2),
``--only hf-mimi,moshi-mimi`` to pick rows.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from _roofline import count_flops, gemm_peak
from voxtok.codecs.convert import convert


@dataclass
class Row:
    kind: str
    model: str
    sample_rate: int
    encode: tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None  # (ours, theirs) -> codes
    decode: tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]  # (ours, theirs): codes -> audio
    codes: Callable[[int], Tensor]  # frames -> codes (for decode-only rows)
    hop: int


def _speech(sample_rate: int, seconds: float) -> Tensor:
    from voxtok import audio as A

    x, sr = A.read(Path(__file__).parents[1] / "tests" / "data" / "2412-153948-0001.flac")
    y = A.to_mono(A.promote(A.resample(x, sr, sample_rate)))
    n = int(seconds * sample_rate)
    reps = math.ceil(n / y.shape[-1])
    return y.repeat(1, 1, reps)[..., :n].float().contiguous()


def _fill_ema(embed_sum: Tensor, usage: Tensor, frames: Tensor) -> None:
    """EMA codebook rows for one RVQ stage: one close code per frame (a tenth of it: the residual shrinks ~10%
    a stage, as trained RVQs do), the rest far away. Random codes in high dimension are all nearly equally far
    from a frame, and rounding would decide between them; this way every choice has a margin."""
    k, n = embed_sum.shape[0], min(frames.shape[0], embed_sum.shape[0])
    rows = 10 * frames.std() * torch.randn_like(embed_sum)
    pick = torch.randperm(frames.shape[0])[:n]
    rows[torch.randperm(k)[:n]] = 0.1 * frames[pick] + 0.05 * frames.std() * torch.randn(n, frames.shape[1])
    usage.fill_(1.0)
    embed_sum.copy_(rows)


def _encodec(tmp: Path, seconds: float) -> Row:
    from transformers import EncodecConfig, EncodecModel

    ref = EncodecModel(EncodecConfig()).eval()
    with torch.no_grad():
        frames = ref.encoder(_speech(24000, seconds)).permute(0, 2, 1).reshape(-1, 128)
        for layer in ref.quantizer.layers:
            cb = layer.codebook
            _fill_ema(cb.embed, cb.cluster_size, frames)
            cb.embed_avg.copy_(cb.embed)
            frames = frames - cb.embed[cb.quantize(frames)]
    ref.save_pretrained(tmp / "encodec")
    codec = convert("hf-encodec", tmp / "encodec")
    return Row(
        "hf-encodec", "EnCodec 24 kHz, 32 x 1024", 24000,
        (lambda x: codec.encode(x).codes, lambda x: ref.encode(x, bandwidth=24.0).audio_codes[0]),
        (codec.decode, lambda c: ref.decode(c[None], [None]).audio_values),
        lambda t: torch.randint(0, 1024, (1, 32, t)), 320,
    )  # fmt: skip


def _dac(tmp: Path, seconds: float) -> Row:
    from transformers import DacConfig, DacModel

    cfg = DacConfig(sampling_rate=44100)  # defaults: the 44.1 kHz layout, 9 codebooks
    ref = DacModel(cfg).eval()
    ref.save_pretrained(tmp / "dac")
    codec = convert("hf-dac", tmp / "dac")
    return Row(
        "hf-dac", "DAC 44.1 kHz, 9 x 1024", 44100,
        (lambda x: codec.encode(x).codes, lambda x: ref.encode(x).audio_codes),
        (codec.decode, lambda c: ref.decode(audio_codes=c).audio_values),
        lambda t: torch.randint(0, 1024, (1, 9, t)), 512,
    )  # fmt: skip


def _mimi(tmp: Path, seconds: float) -> Row:
    from transformers import MimiConfig, MimiModel

    ref = MimiModel(MimiConfig()).eval()
    with torch.no_grad():
        latents = ref.encoder(_speech(24000, seconds)).latents
        for rvq in (ref.quantizer.semantic_residual_vector_quantizer, ref.quantizer.acoustic_residual_vector_quantizer):
            e = rvq.input_proj(latents).permute(0, 2, 1).reshape(-1, 256)
            for layer in rvq.layers:
                cb = layer.codebook
                _fill_ema(cb.embed_sum, cb.cluster_usage, e)
                cb._embed = None
                e = e - cb.embed[cb.quantize(e)]
    ref.save_pretrained(tmp / "mimi")
    codec = convert("hf-mimi", tmp / "mimi")
    return Row(
        "hf-mimi", "Mimi (transformers), 32 x 2048", 24000,
        (lambda x: codec.encode(x).codes, lambda x: ref.encode(x).audio_codes),
        (codec.decode, lambda c: ref.decode(c).audio_values),
        lambda t: torch.randint(0, 2048, (1, 32, t)), 1920,
    )  # fmt: skip


def _xcodec2(tmp: Path, seconds: float) -> Row:
    from transformers import Xcodec2Config, Xcodec2Model

    # Published sizes (Xcodec2Config's defaults, 629M parameters): the 16-layer w2v-BERT 2.0 (387M), the BigCodec
    # acoustic encoder (38M), the Vocos Transformer decoder (187M). Building and converting takes ~30 s and ~8 GB.
    ref = Xcodec2Model(Xcodec2Config()).eval()
    ref.save_pretrained(tmp / "xcodec2")
    codec = convert("hf-xcodec2", tmp / "xcodec2")
    extractor = _xcodec2_features(ref.config.hop_length)

    def theirs(x: Tensor) -> Tensor:
        return ref.encode(**extractor(x[0, 0])).audio_codes

    # transformers' feature extractor appends one zero sample before padding to whole frames (docs/interop.md);
    # voxtok's encode gets the same samples, so both encode the same signal and give the same number of frames.
    return Row(
        "hf-xcodec2", f"X-codec2 (w2v-BERT {ref.config.semantic_model_config.num_hidden_layers} layers), 1 x 65536 FSQ",
        16000, (lambda x: codec.encode(torch.nn.functional.pad(x, (0, 1))).codes, theirs),
        (codec.decode, lambda c: ref.decode(audio_codes=c).audio_values),
        lambda t: torch.randint(0, 4**8, (1, 1, t)), 320,
    )  # fmt: skip


def _xcodec2_features(hop: int) -> Callable[[Tensor], dict[str, Tensor]]:
    """Mono audio ``[S]`` -> ``Xcodec2Model.encode`` inputs, as a user makes them: transformers'
    ``Xcodec2FeatureExtractor`` (it needs torchaudio); without torchaudio, the recipe X-codec2's own inference
    code used: the same padding, and SeamlessM4T's (numpy) filterbank features."""
    try:
        from transformers import Xcodec2FeatureExtractor

        fe = Xcodec2FeatureExtractor(hop_length=hop)
        return lambda a: dict(fe(a.numpy(), sampling_rate=16000, return_tensors="pt"))
    except ImportError:
        from transformers import SeamlessM4TFeatureExtractor

        seamless = SeamlessM4TFeatureExtractor(padding_value=1.0)

    def features(a: Tensor) -> dict[str, Tensor]:
        n = -(-(a.shape[-1] + 1) // hop) * hop  # one zero appended, then whole frames
        values = torch.nn.functional.pad(a, (0, n - a.shape[-1]))
        out = seamless(torch.nn.functional.pad(values, (hop // 2, hop // 2)).numpy(), sampling_rate=16000,
                       return_tensors="pt")  # fmt: skip
        return {"input_values": values[None, None], "input_features": out["input_features"],
                "input_features_mask": out["attention_mask"]}  # fmt: skip

    return features


def _moshi(tmp: Path, seconds: float) -> Row:
    if "sentencepiece" not in sys.modules:  # moshi imports it for its LM's text tokenizer only
        try:
            import sentencepiece  # noqa: F401
        except ImportError:
            stub = types.ModuleType("sentencepiece")
            stub.SentencePieceProcessor = object
            sys.modules["sentencepiece"] = stub
    from moshi.models import loaders
    from safetensors.torch import save_file

    ref = loaders.get_mimi(None, device="cpu").eval()
    ref.set_num_codebooks(32)
    with torch.no_grad():
        emb = ref.encode_to_latent(_speech(24000, seconds), quantize=False)
        for rvq in (ref.quantizer.rvq_first, ref.quantizer.rvq_rest):
            e = rvq.input_proj(emb).permute(0, 2, 1).reshape(-1, 256)
            for layer in rvq.vq.layers:
                cb = layer._codebook
                _fill_ema(cb.embedding_sum, cb.cluster_usage, e)
                cb._initialized.fill_(1.0)
                cb._embedding = None
                e = e - cb.embedding[torch.cdist(e, cb.embedding).argmin(-1)]
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp / "moshi.safetensors"))
    codec = convert("moshi-mimi", tmp / "moshi.safetensors")
    return Row(
        "moshi-mimi", "Mimi (moshi 0.2.13), 32 x 2048", 24000,
        (lambda x: codec.encode(x).codes, ref.encode),
        (codec.decode, ref.decode),
        lambda t: torch.randint(0, 2048, (1, 32, t)), 1920,
    )  # fmt: skip


BUILDERS: dict[str, Callable[[Path, float], Row]] = {
    "hf-encodec": _encodec, "hf-dac": _dac, "hf-mimi": _mimi, "hf-xcodec2": _xcodec2, "moshi-mimi": _moshi,
}  # fmt: skip


def _time(fns: tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]], x: Tensor, repeats: int):
    """Median wall and CPU seconds of (ours, theirs), alternated; plus both outputs of the last run.

    CPU time (``time.process_time``: all threads of this process) does not advance while the process waits for
    a core, so on a shared machine it is the steadier of the two."""
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    outs: list[Tensor] = [x, x]
    with torch.inference_mode():
        for f in fns:  # warm-up (allocator, lazy buffers)
            f(x)
        for _ in range(repeats):
            for i, f in enumerate(fns):
                t0, c0 = time.perf_counter(), time.process_time()
                outs[i] = f(x)
                wall[i].append(time.perf_counter() - t0)
                cpu[i].append(time.process_time() - c0)
    med = statistics.median
    return (med(wall[0]), med(wall[1])), (med(cpu[0]), med(cpu[1])), outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 2 repeats, no DAC or X-codec2")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default 5, quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per call (default 3, quick 2)")
    parser.add_argument("--only", default="", help="comma-separated kinds to run")
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    repeats = args.repeats or (2 if args.quick else 3)
    kinds = [k for k in BUILDERS if not args.only or k in args.only.split(",")]
    if args.quick and not args.only:  # the two largest models (X-codec2: a 0.6 B semantic model, ~8 GB to build)
        kinds.remove("hf-dac")
        kinds.remove("hf-xcodec2")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")
    peak = gemm_peak()
    print(f"voxtok converted codecs vs originals: {seconds:g} s of speech, batch 1, {torch.get_num_threads()} CPU "
          f"threads, median of {repeats} (torch {torch.__version__}); fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s\n")
    print("| kind | model | encode ours (s) | encode original (s) | speed-up (wall / CPU) | decode ours (s) | "
          "decode original (s) | speed-up (wall / CPU) | same codes | max abs audio diff | voxtok GFLOP/s "
          "(encode / decode) | ceiling (encode / decode) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            try:
                row = BUILDERS[kind](Path(tmp), seconds)
            except ImportError as e:
                print(f"| {kind} | not run: {e} | | | | | | | | |")
                continue
            x = _speech(row.sample_rate, seconds)
            x = x[..., : x.shape[-1] // row.hop * row.hop]  # whole frames: every implementation agrees on T
            if row.encode is not None:
                (e_ours, e_theirs), (ec_ours, ec_theirs), (c_ours, c_theirs) = _time(row.encode, x, repeats)
                differ = int((c_ours != c_theirs).sum()) if c_ours.shape == c_theirs.shape else -1
                same = "yes" if differ == 0 else f"NO ({differ} of {c_theirs.numel()} differ)"
                enc = f"{e_ours:.3f} | {e_theirs:.3f} | {e_theirs / e_ours:.2f}x / {ec_theirs / ec_ours:.2f}x"
                codes = c_theirs
                f_enc = count_flops(row.encode[0], x)
                rate_e, ceil_e = f"{f_enc / e_ours / 1e9:.0f}", f"{e_theirs / (f_enc / peak):.2f}x"
            else:
                enc, same = "decode-only | | ", "n/a"
                codes = row.codes(x.shape[-1] // row.hop)
                rate_e = ceil_e = "-"
            (d_ours, d_theirs), (dc_ours, dc_theirs), (a_ours, a_theirs) = _time(row.decode, codes, repeats)
            n = min(a_ours.shape[-1], a_theirs.shape[-1])
            diff = (a_ours[..., :n] - a_theirs.reshape(a_ours.shape[0], 1, -1)[..., :n]).abs().max().item()
            dec = f"{d_ours:.3f} | {d_theirs:.3f} | {d_theirs / d_ours:.2f}x / {dc_theirs / dc_ours:.2f}x"
            f_dec = count_flops(row.decode[0], codes)
            roof = f"{rate_e} / {f_dec / d_ours / 1e9:.0f} | {ceil_e} / {d_theirs / (f_dec / peak):.2f}x"
            print(f"| {row.kind} | {row.model} | {enc} | {dec} | {same} | {diff:.1e} | {roof} |", flush=True)
            del row


if __name__ == "__main__":
    main()
