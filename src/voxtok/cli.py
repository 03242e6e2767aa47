"""The ``voxtok`` command line. Each subcommand has ``--help``."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

DEMO_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Neural audio codecs turn speech into a short sequence of tokens.",
    "Every token stands for a fraction of a second of sound.",
)


def synthesize(text: str, path: Path, voice: str = "en-us") -> Path:
    """Speak ``text`` into the WAV file ``path`` with espeak-ng (22.05 kHz mono, 16-bit)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: `sudo apt-get install -y espeak-ng` (make demo does it)")
    subprocess.run([exe, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


def _demo(args: argparse.Namespace) -> int:
    import torch

    from voxtok import audio

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"voxtok demo: synthesising {len(DEMO_SENTENCES)} clips with espeak-ng into {out}/")
    rows = []
    for i, text in enumerate(DEMO_SENTENCES):
        src = synthesize(text, out / f"clip{i}.wav")
        x, sr = audio.read(src)
        y = audio.resample(x, sr, args.sample_rate)
        flac = out / f"clip{i}_{args.sample_rate // 1000}k.flac"
        audio.write(flac, y, args.sample_rate)
        z, sr2 = audio.read(flac)
        # The flac holds 16-bit PCM, so reading it and writing it again must give the same samples.
        again = out / f"clip{i}_again.flac"
        audio.write(again, z, sr2)
        z2, _ = audio.read(again)
        exact = bool(torch.equal(z, z2))
        rows.append((src.name, sr, x.shape[-1] / sr, flac.name, sr2, z.shape[-1], exact))
        if not exact:
            print(f"error: {flac} did not round-trip bit-exactly", file=sys.stderr)
            return 1
    print(f"{'source':<12}{'rate':>7}{'seconds':>9}  {'written':<20}{'rate':>7}{'samples':>9}  bit-exact")
    for name, sr, dur, written, sr2, n, exact in rows:
        print(f"{name:<12}{sr:>7}{dur:>9.2f}  {written:<20}{sr2:>7}{n:>9}  {exact}")
    print("demo finished: audio I/O and resampling round-trip.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxtok", description="Neural audio codecs and speech tokenizers.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run the main job on an embedded default (synthesised speech)")
    demo.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    demo.add_argument("--sample-rate", type=int, default=24000, help="rate to resample to (default: 24000)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from voxtok import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
