"""``voxtok eval MODEL --input DIR|MANIFEST --output DIR [--metrics ...] [--max-items N] [--baseline ...]``."""

from __future__ import annotations

import argparse
import sys


def cli_eval(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed arguments; print the summary table and where the report went."""
    from voxtok.eval.evaluation import evaluate

    metrics = None
    if args.metrics:
        metrics = [m.strip() for part in args.metrics for m in part.split(",") if m.strip()]
    result = evaluate(
        args.model, args.input, output=args.output, metrics=metrics, baselines=args.baseline or (),
        max_items=args.max_items, sample_rate=args.sample_rate, n_q=args.n_q, device=args.device,
        trust_pickle=args.trust_pickle, asr_model=args.asr_model,
        asr_language=None if args.asr_language == "auto" else args.asr_language, plots=args.plots,
        save_audio=args.save_audio, progress=not args.no_progress,
    )
    print(result.table())
    for group, why in result.unavailable.items():
        print(f"{group}: {why}")
    t = result.timing
    print(f"\n{t['utterances']} utterances, {len(result.bad_inputs)} inputs skipped, {len(result.failures)} failed "
          f"scores; {t['wall_seconds']:.1f} s")
    for name, s in t["systems"].items():
        print(f"{name}: codec {s['codec_seconds_per_utterance']:.3f} s / utterance, metrics "
              f"{s['metric_seconds_per_utterance']:.3f} s / utterance")
    print(f"report: {args.output}/report.md, results.json, plots/", file=sys.stderr)
    return 0 if t["utterances"] else 1


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``eval`` subcommand (handler: ``cli_eval``) on a CLI's subparsers."""
    from voxtok.eval.evaluation import METRIC_GROUPS

    p = subparsers.add_parser(
        "eval", help="score a codec (and baselines) on speech: PESQ, STOI, SI-SDR, DNSMOS, WER, bitrate, ...",
        description="Reconstruct every utterance with MODEL (and each --baseline), score it against the reference "
                    "with the same metric code, and write report.md, results.json and plots/ into --output.")
    p.add_argument("model", help="preset name (random weights), voxtok save_pretrained directory, KIND:PATH "
                                 "(converted, e.g. hf-mimi:DIR), or a transformers codec directory")
    p.add_argument("--input", required=True, help="folder of audio files (recursive) or manifest (.jsonl/.csv/.tsv "
                                                  "with path, optional text, start, end, id)")
    p.add_argument("--output", required=True, help="directory for report.md, results.json, plots/")
    p.add_argument("--metrics", nargs="+", default=None,
                   help=f"metric groups or names, space or comma separated (default all: {', '.join(METRIC_GROUPS)})")
    p.add_argument("--max-items", type=int, default=None, help="evaluate the first N utterances only")
    p.add_argument("--baseline", action="append", default=None,
                   help="another system on the same files: preset, voxtok directory, KIND:PATH, or a transformers "
                        "DacModel / EncodecModel / MimiModel / XcodecModel / Xcodec2Model directory (repeatable)")
    p.add_argument("--sample-rate", type=int, default=16000, help="rate every score is computed at (default 16000)")
    p.add_argument("--n-q", type=int, default=None, help="MODEL uses its first N codebooks (default all)")
    p.add_argument("--device", default="cpu", help="where codecs run (default cpu); metrics run on the CPU")
    p.add_argument("--asr-model", default=None,
                   help="faster-whisper model directory for WER / CER (default: whisper-base from its PyPI packages)")
    p.add_argument("--asr-language", default="en", help="language Whisper is told, or 'auto' (default en)")
    p.add_argument("--plots", type=int, default=3, help="utterances whose spectrograms are plotted (default 3)")
    p.add_argument("--save-audio", action="store_true", help="also write the reconstructions under OUTPUT/audio/")
    p.add_argument("--trust-pickle", action="store_true", help="let a dac:PATH checkpoint (a pickle) be read")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cli_eval)
    return p
