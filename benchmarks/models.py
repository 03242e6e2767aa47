"""Encode / decode speed of voxtok's encoder and decoder parts beside transformers' implementations.

For 10 s of audio on 2 CPU threads, each row times voxtok's part and the transformers part of the same
architecture (built from its default config with random weights; nothing is downloaded), alternating the two in
one process, and reports the median of the repeats, the parameter counts and the speed-up (their time / ours).

Rows:
- DAC 44.1 kHz: ``SEANetEncoder/Decoder.named("dac-44khz")`` vs ``DacModel(DacConfig()).encoder / .decoder``.
- EnCodec 24 kHz: ``named("encodec-24khz")`` vs ``EncodecModel(EncodecConfig()).encoder / .decoder``.
- WavTokenizer 40 Hz: SEANet ``named("wavtokenizer-40hz")`` vs ``WavTokenizerModel``'s encoder; decoder
  ``VocosDecoder.named("wavtokenizer-40hz")`` vs its Vocos backbone + iSTFT head.
- Mimi: SEANet + ``CausalTransformer.named("mimi")`` + the 25 -> 12.5 Hz strided conv, vs ``MimiModel``'s
  ``encoder`` (MimiEncoderModel) / ``decoder`` (MimiDecoderModel).

voxtok runs its inference path: weight norm folded (``remove_weight_norm``), ``torch.inference_mode``.
transformers runs as its own inference would: ``eval()``, ``torch.inference_mode``.

Usage: ``python benchmarks/models.py`` (full grid, 10 s, 5 repeats) or ``--quick`` (2 s, 2 repeats, no DAC).
The seconds are medians of wall time. Beside the median wall-time ratio the table gives the best-run ratio and
the ratio of median CPU time, because on a shared machine other jobs add noise that the median of a few runs
does not remove. The last columns count the matmul / convolution FLOPs of one call (``benchmarks/_roofline.py``),
the rate each side reaches, and the ceiling: the speed-up over transformers of a part running at this CPU's
measured fp32 GEMM peak.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from _roofline import count_flops, gemm_peak
from voxtok.models.conv import Conv1d, ConvTranspose1d, remove_weight_norm
from voxtok.models.seanet import SEANetDecoder, SEANetEncoder


def params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@dataclass
class Part:
    name: str
    ours: Callable[[Tensor], Tensor]
    theirs: Callable[[Tensor], Tensor]
    ours_params: int
    theirs_params: int
    make_input: Callable[[], Tensor]
    note: str = ""


def _time_pair(part: Part, repeats: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``(wall, cpu)`` seconds per call for both implementations, alternated so that load changes on the machine
    hit both alike. CPU time (``time.process_time``: every thread of this process) does not advance while the
    process waits for a core, so it is the steadier measure on a shared machine."""
    x = part.make_input()
    with torch.inference_mode():
        warm = x[..., : max(1, x.shape[-1] // 10)]  # thread pool, allocator, oneDNN set-up, at a tenth the cost
        part.ours(warm)
        part.theirs(warm)
        ours, theirs = [], []
        for _ in range(repeats):
            for fn, out in ((part.ours, ours), (part.theirs, theirs)):
                w, c = time.perf_counter(), time.process_time()
                fn(x)
                out.append((time.perf_counter() - w, time.process_time() - c))
    return ours, theirs


# -- builders ----------------------------------------------------------------------------------------------------


def _seanet_parts(label: str, config: str, ref: torch.nn.Module, sample_rate: int, seconds: float) -> list[Part]:
    """Encoder and decoder rows for a SEANet family beside a transformers model with .encoder / .decoder."""
    enc = SEANetEncoder.named(config).eval().remove_weight_norm()
    dec = SEANetDecoder.named(config).eval().remove_weight_norm()
    n = int(seconds * sample_rate)
    frames = enc.output_length(n)
    return [
        Part(f"{label} encoder", enc, ref.encoder, params(enc), params(ref.encoder), lambda: torch.randn(1, 1, n)),
        Part(f"{label} decoder", dec, ref.decoder, params(dec), params(ref.decoder),
             lambda: torch.randn(1, enc.dimension, frames)),
    ]  # fmt: skip


def dac_parts(seconds: float) -> list[Part]:
    from transformers import DacConfig, DacModel

    return _seanet_parts("DAC 44.1 kHz", "dac-44khz", DacModel(DacConfig()).eval(), 44100, seconds)


def encodec_parts(seconds: float) -> list[Part]:
    from transformers import EncodecConfig, EncodecModel

    return _seanet_parts("EnCodec 24 kHz", "encodec-24khz", EncodecModel(EncodecConfig()).eval(), 24000, seconds)


def wavtokenizer_parts(seconds: float) -> list[Part]:
    from transformers import WavTokenizerConfig, WavTokenizerModel

    ref = WavTokenizerModel(WavTokenizerConfig()).eval()
    enc = SEANetEncoder.named("wavtokenizer-40hz").eval().remove_weight_norm()
    n = int(seconds * 24000)
    frames = enc.output_length(n)
    parts = [
        Part("WavTokenizer 40 Hz encoder (SEANet)", enc, ref.encoder_model.encoder, params(enc),
             params(ref.encoder_model.encoder), lambda: torch.randn(1, 1, n)),
    ]  # fmt: skip
    try:
        from voxtok.models.vocos import VocosDecoder
    except ImportError:
        return parts
    dec = VocosDecoder.named("wavtokenizer-40hz").eval()
    remove_weight_norm(dec)
    bandwidth = torch.tensor([0])

    def ref_decode(z: Tensor) -> Tensor:
        return ref.head(ref.backbone(z, bandwidth))

    parts.append(
        Part("WavTokenizer 40 Hz decoder (Vocos)", lambda z: dec(z, 0), ref_decode, params(dec),
             params(ref.backbone, ref.head), lambda: torch.randn(1, 512, frames))
    )  # fmt: skip
    return parts


class _MimiEncoder(nn.Module):
    """SEANet (24 kHz -> 25 Hz) -> causal Transformer -> strided conv (25 -> 12.5 Hz), as Mimi."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.seanet = SEANetEncoder.named("mimi")
        self.transformer = transformer
        self.downsample = Conv1d(512, 512, 4, stride=2, bias=False, causal=True, pad_mode="replicate")

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.transformer(self.seanet(x)))


class _MimiDecoder(nn.Module):
    """Depthwise transposed conv (12.5 -> 25 Hz) -> causal Transformer -> SEANet decoder, as Mimi."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.upsample = ConvTranspose1d(512, 512, 4, stride=2, groups=512, bias=False, causal=True)
        self.transformer = transformer
        self.seanet = SEANetDecoder.named("mimi")

    def forward(self, z: Tensor) -> Tensor:
        return self.seanet(self.transformer(self.upsample(z)))


def mimi_parts(seconds: float) -> list[Part]:
    from transformers import MimiConfig, MimiModel

    ref = MimiModel(MimiConfig()).eval()
    n = int(seconds * 24000)

    def ref_encode(x: Tensor) -> Tensor:
        return ref.encoder(x).latents

    def ref_decode(z: Tensor) -> Tensor:
        return ref.decoder(z).audio_values

    try:
        from voxtok.models.transformer import CausalTransformer
    except ImportError:
        enc, dec = SEANetEncoder.named("mimi").eval(), SEANetDecoder.named("mimi").eval()
        note = "CausalTransformer missing: SEANet only vs transformers' SEANet"
        frames = enc.output_length(n)
        return [
            Part("Mimi SEANet encoder", enc, ref.encoder.encoder_seanet, params(enc),
                 params(ref.encoder.encoder_seanet), lambda: torch.randn(1, 1, n), note),
            Part("Mimi SEANet decoder", dec, ref.decoder.decoder_seanet, params(dec),
                 params(ref.decoder.decoder_seanet), lambda: torch.randn(1, 512, frames), note),
        ]  # fmt: skip
    enc = _MimiEncoder(CausalTransformer.named("mimi")).eval()
    dec = _MimiDecoder(CausalTransformer.named("mimi")).eval()
    frames = enc.seanet.output_length(n) // 2
    return [
        Part("Mimi encoder (SEANet + Transformer + downsample)", enc, ref_encode, params(enc), params(ref.encoder),
             lambda: torch.randn(1, 1, n)),
        Part("Mimi decoder (upsample + Transformer + SEANet)", dec, ref_decode, params(dec), params(ref.decoder),
             lambda: torch.randn(1, 512, frames)),
    ]  # fmt: skip


# -- main --------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 s of audio, 2 repeats, no DAC (for `make bench`)")
    ap.add_argument("--seconds", type=float, default=None, help="audio duration (default 10, quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per part (default 5, quick 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="families to run: dac encodec wavtokenizer mimi")
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    repeats = args.repeats or (2 if args.quick else 5)
    families = args.only or (["encodec", "wavtokenizer", "mimi"] if args.quick else
                             ["dac", "encodec", "wavtokenizer", "mimi"])  # fmt: skip
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")
    builders = {"dac": dac_parts, "encodec": encodec_parts, "wavtokenizer": wavtokenizer_parts, "mimi": mimi_parts}

    peak = gemm_peak()
    print(f"# voxtok models vs transformers: {seconds:g} s of audio, {args.threads} threads, median of {repeats}; "
          f"fp32 GEMM peak {peak / 1e9:.0f} GFLOP/s\n")
    print("| part | voxtok params | transformers params | voxtok s | transformers s | speed-up (wall, median) "
          "| speed-up (wall, best) | speed-up (CPU time, median) | GFLOP | voxtok GFLOP/s | transformers GFLOP/s "
          "| ceiling |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for fam in families:
        for part in builders[fam](seconds):
            ours_all, theirs_all = _time_pair(part, repeats)
            ours = statistics.median(w for w, _ in ours_all)
            theirs = statistics.median(w for w, _ in theirs_all)
            best = min(w for w, _ in theirs_all) / min(w for w, _ in ours_all)
            cpu = statistics.median(c for _, c in theirs_all) / statistics.median(c for _, c in ours_all)
            sizes = f"{part.ours_params / 1e6:.2f} M | {part.theirs_params / 1e6:.2f} M"
            ratios = f"{theirs / ours:.2f}x | {best:.2f}x | {cpu:.2f}x"
            x = part.make_input()
            # One count for both sides: the same architecture does the same arithmetic (and transformers'
            # weight-norm parametrisations do not run under the counting mode).
            flops = count_flops(part.ours, x)
            rates = f"{flops / 1e9:.1f} | {flops / ours / 1e9:.0f} | {flops / theirs / 1e9:.0f}"
            ceiling = theirs / (flops / peak)
            print(f"| {part.name} | {sizes} | {ours:.3f} | {theirs:.3f} | {ratios} | {rates} | {ceiling:.2f}x |",
                  flush=True)  # fmt: skip
            if part.note:
                notes.append(f"{part.name}: {part.note}")
    for note in notes:
        print(f"\nNote: {note}")


if __name__ == "__main__":
    main()
