"""``voxtok fit`` and ``voxtok export``: the hooks ``voxtok.cli`` calls. Importing this module is cheap (Lightning
loads only when ``fit`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_training_parsers", "export_checkpoint", "fit_main"]


def fit_main(argv: list[str]) -> int:
    """``voxtok fit ARGV``: ``LightningCLI``'s ``fit`` with every argument after ``fit``."""
    from voxtok.training.lightning_cli import run

    run(argv)
    return 0


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the codec of a ``voxtok fit`` checkpoint as a ``save_pretrained`` directory (``voxtok.load`` reads it).

    The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only, never pickled
    code. The codec is rebuilt from the config stored beside its weights, so neither the recipe nor the teachers
    are needed.
    """
    import torch

    from voxtok.codecs import Codec

    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    config = (ckpt.get("voxtok") or {}).get("codec_config") if isinstance(ckpt, dict) else None
    if config is None or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a voxtok fit checkpoint (no codec config); was it written by CodecModule?")
    codec = Codec.from_config(config)
    prefix = "codec."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    result = codec.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: codec weights do not fit its config; missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return codec.eval().save_pretrained(out_dir)


def _export(args: argparse.Namespace) -> int:
    out = export_checkpoint(args.checkpoint, args.out_dir)
    print(f"{args.checkpoint} -> {out}/ (config.json, model.safetensors); load it with voxtok.load({str(out)!r})")
    return 0


def add_training_parsers(sub: Any) -> None:
    """Add ``fit`` (handled before argparse: everything after it goes to Lightning) and ``export``."""
    sub.add_parser("fit", add_help=False,
                   help="train a codec (LightningCLI: voxtok fit --config RECIPE.yaml; see voxtok fit --help)")
    exp = sub.add_parser("export", help="training checkpoint (.ckpt) -> codec directory that voxtok.load reads")
    exp.add_argument("checkpoint", help="a .ckpt written by voxtok fit")
    exp.add_argument("out_dir", help="output directory (config.json + model.safetensors)")
    exp.set_defaults(func=_export)
