"""The ``voxtok`` command line. Each subcommand has ``--help``."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from voxtok.demo.run import main as demo_main

    return demo_main(args)


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
    demo = sub.add_parser(
        "demo", help="train a small codec from scratch on CPU, tokenize a corpus with it and evaluate it (docs/demo.md)"
    )
    demo.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    demo.add_argument("--minutes", type=float, default=10.0,
                      help="training budget in wall-clock minutes (default: 10)")
    demo.add_argument("--retrain", action="store_true", help="train again even if OUT/model holds a trained codec")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
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
