"""``voxtok extract``: the subcommand's arguments; the work is ``voxtok.tokenizers.extraction.extract``, imported
only when the subcommand runs (it pulls in pyarrow and Lightning)."""

from __future__ import annotations

from typing import Any

from voxtok.tokenizers.manifest import AUDIO_EXTENSIONS


def add_extract_parser(subparsers: Any) -> Any:
    """Register ``voxtok extract`` on a CLI's subparsers."""
    p = subparsers.add_parser("extract", help="tokenize a corpus into resumable Parquet shards",
                              description="Encode every utterance of an audio folder or manifest into Parquet "
                                          "shards (docs/extraction.md). Rerun the same command to resume. Exit "
                                          "status: 0 all extracted, 3 some failed (errors.jsonl), 4 --verify "
                                          "mismatch, 1 refused.")
    p.add_argument("model", help="save_pretrained directory, or a preset name (random weights, seed 0)")
    p.add_argument("--input", required=True, help="audio folder (recursive) or manifest (.jsonl/.json/.csv/.tsv)")
    p.add_argument("--output", required=True, help="extraction folder (created; a rerun resumes it)")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
    p.add_argument("--num-workers", type=int, default=2, help="reader processes per rank (default 2)")
    p.add_argument("--accelerator", default="cpu", help="cpu | gpu | auto (Lightning's; default cpu)")
    p.add_argument("--devices", type=int, default=1, help="processes (CPU) or GPUs per node; >1 runs DDP")
    p.add_argument("--num-nodes", type=int, default=1, help="nodes (SLURM / torchrun launch them)")
    p.add_argument("--n-q", type=int, default=None, help="keep the first N codebooks (default all)")
    p.add_argument("--shard-size", type=int, default=1000, help="utterances per shard (default 1000)")
    p.add_argument("--shard-minutes", type=float, default=5.0,
                   help="close a shard after this many minutes even if not full (default 5)")
    p.add_argument("--extensions", default=",".join(AUDIO_EXTENSIONS),
                   help=f"audio extensions for folder input (default {','.join(AUDIO_EXTENSIONS)})")
    p.add_argument("--verify", type=int, default=0, metavar="K",
                   help="re-encode K random utterances alone and compare with the batched codes")
    p.add_argument("--seed", type=int, default=0, help="seed for --verify's choice (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=cli_extract)
    return p


def cli_extract(args: Any) -> int:
    from voxtok.tokenizers.extraction import extract

    result = extract(
        args.model, args.input, args.output, batch_seconds=args.batch_seconds, num_workers=args.num_workers,
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes, n_q=args.n_q,
        shard_size=args.shard_size, shard_seconds=args.shard_minutes * 60,
        extensions=[e for e in args.extensions.split(",") if e], verify=args.verify, seed=args.seed,
        progress=not args.no_progress)
    if result.rank == 0:
        if result.verify is not None:
            print(result.verify.summary())
        print(result.summary())
        return result.exit_status
    return 0
