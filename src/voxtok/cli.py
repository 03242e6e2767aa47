"""The ``voxtok`` command line. Each subcommand has ``--help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Neural audio codecs turn speech into a short sequence of tokens.",
    "Every token stands for a fraction of a second of sound.",
)


def _demo(args: argparse.Namespace) -> int:
    import torch

    import voxtok.audio as audio
    from voxtok.training.synth import speak

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"voxtok demo: synthesising {len(DEMO_SENTENCES)} clips with espeak-ng into {out}/")
    rows = []
    for i, text in enumerate(DEMO_SENTENCES):
        src = speak(text, out / f"clip{i}.wav")
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
    print("audio I/O and resampling round-trip: ok")

    # Tokenise the clips with a codec preset (random weights until trained weights are loaded from a directory).
    from voxtok.codecs.loading import load

    codec = load(args.preset).eval()
    print(f"\ncodec {args.preset}: {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, {codec.num_codebooks} "
          f"codebooks x {codec.codebook_size}, {codec.bitrate / 1000:.2f} kbps (random weights)")
    clips = [audio.read(out / f"clip{i}.wav") for i in range(len(DEMO_SENTENCES))]
    lengths = torch.tensor([x.shape[-1] for x, _ in clips])
    batch = torch.zeros(len(clips), 1, int(lengths.max()))
    for i, (x, _) in enumerate(clips):
        batch[i, :, : x.shape[-1]] = x
    tokens = codec.encode(batch, lengths=lengths, sample_rate=clips[0][1])
    decoded = codec.decode(tokens)
    print(f"{'clip':<12}{'frames':>8}{'codes':>16}{'samples out':>13}")
    for i in range(len(clips)):
        n = int(tokens.lengths[i])
        shape = f"{tokens.num_codebooks} x {n}"
        print(f"clip{i}.wav   {n:>8}{shape:>16}{int(tokens.audio_lengths[i]):>13}")
        audio.write(out / f"clip{i}_decoded.wav", decoded[i, :, : int(tokens.audio_lengths[i])], codec.sample_rate)
    print("demo finished: clips synthesised, round-tripped through audio I/O, encoded to tokens and decoded.")
    return 0


def _load_codec(model: str):
    from voxtok.codecs.loading import load

    return load(model).eval()


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    import voxtok.audio as audio

    codec = _load_codec(args.model)
    x, sr = audio.read(args.input)
    tokens = codec.encode(x[None], sample_rate=sr, n_q=args.n_q)
    np.savez(
        args.output,
        codes=tokens.codes[0].numpy(),
        length=np.int64(tokens.lengths[0]),
        audio_length=np.int64(tokens.audio_lengths[0]),
        frame_rate=np.float64(tokens.frame_rate),
        sample_rate=np.int64(tokens.sample_rate),
        model=np.str_(str(args.model)),
    )
    q, t = tokens.codes.shape[1:]
    print(f"{args.input} -> {args.output}: {q} codebooks x {t} frames at {tokens.frame_rate:g} Hz")
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import voxtok.audio as audio
    from voxtok.types import Tokens

    codec = _load_codec(args.model)
    with np.load(args.input, allow_pickle=False) as f:
        missing = [k for k in ("codes", "length", "audio_length", "sample_rate") if k not in f.files]
        if missing:
            raise SystemExit(f"{args.input}: not a voxtok token file (missing {', '.join(missing)})")
        codes = torch.from_numpy(f["codes"]).long()[None]
        sample_rate = int(f["sample_rate"])
        if sample_rate != codec.sample_rate:
            raise SystemExit(f"{args.input}: tokens are for a {sample_rate} Hz codec; {args.model} is "
                             f"{codec.sample_rate} Hz")
        tokens = Tokens(codes, torch.tensor([int(f["length"])]), torch.tensor([int(f["audio_length"])]),
                        float(f["frame_rate"]), sample_rate)
    y = codec.decode(tokens)
    audio.write(args.output, y[0], codec.sample_rate)
    print(f"{args.input} -> {args.output}: {y.shape[-1]} samples at {codec.sample_rate} Hz")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxtok", description="Neural audio codecs and speech tokenizers.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run the main job on an embedded default (synthesised speech)")
    demo.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    demo.add_argument("--sample-rate", type=int, default=24000, help="rate to resample to (default: 24000)")
    demo.add_argument("--preset", default="mimi-12.5hz", help="codec preset to tokenise with (default: mimi-12.5hz)")
    demo.set_defaults(func=_demo)
    enc = sub.add_parser("encode", help="audio file -> tokens (.npz: codes, lengths, frame rate, model id)")
    enc.add_argument("model", help="preset name (random weights) or save_pretrained directory")
    enc.add_argument("input", help="audio file (any rate; resampled to the codec's)")
    enc.add_argument("output", help="output .npz")
    enc.add_argument("--n-q", type=int, default=None, help="use the first N codebooks")
    enc.set_defaults(func=_encode)
    dec = sub.add_parser("decode", help="tokens (.npz from `voxtok encode`) -> audio file")
    dec.add_argument("model", help="preset name or save_pretrained directory (the one that encoded)")
    dec.add_argument("input", help="input .npz")
    dec.add_argument("output", help="output audio file (.wav, .flac)")
    dec.set_defaults(func=_decode)
    from voxtok.codecs.convert import add_convert_parser

    add_convert_parser(sub)
    from voxtok.eval.cli import add_eval_parser

    add_eval_parser(sub)
    from voxtok.training.cli import add_training_parsers

    add_training_parsers(sub)
    from voxtok.tokenizers.cli import add_extract_parser

    add_extract_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["fit"]:  # everything after `fit` belongs to LightningCLI
        from voxtok.training.cli import fit_main

        try:
            return fit_main(argv[1:])
        except ValueError as e:  # a bad recipe, path or file: one clear line
            print(f"voxtok fit: error: {e}", file=sys.stderr)
            return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from voxtok._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except ValueError as e:  # AudioError included: bad input gets one clear line, not a traceback
        print(f"voxtok {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
