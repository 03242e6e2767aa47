"""Converters for published codec weights: ``convert(kind, path) -> Codec``, one module per source.

Kinds (docs/interop.md gives the preset each maps to and every behaviour difference):

- ``hf-encodec``, ``hf-dac``, ``hf-mimi``, ``hf-xcodec2``: a transformers ``save_pretrained`` directory
  (``config.json`` + ``model.safetensors``).
- ``dac``: a descript-audio-codec ``.pth`` checkpoint (a pickle: needs ``trust_pickle=True``, and is read with
  ``torch.load(weights_only=True)`` even then).
- ``moshi-mimi``: moshi's Mimi safetensors file.

Converters only rename and reshape tensors; the voxtok parts are never changed to fit a source layout.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from voxtok.codecs.codec import Codec

__all__ = ["KINDS", "cli_convert", "convert"]


# kind -> (module, function): each converter module is imported only when its kind is asked for.
KINDS: dict[str, tuple[str, str]] = {
    "hf-encodec": ("hf_encodec", "convert_hf_encodec"),
    "hf-dac": ("hf_dac", "convert_hf_dac"),
    "hf-mimi": ("hf_mimi", "convert_hf_mimi"),
    "hf-xcodec2": ("hf_xcodec2", "convert_hf_xcodec2"),
    "dac": ("dac_pth", "convert_dac_pth"),
    "moshi-mimi": ("moshi_mimi", "convert_moshi_mimi"),
}
_PICKLE_KINDS = {"dac"}


def convert(kind: str, path: str | Path, trust_pickle: bool = False) -> Codec:
    """Load published weights of ``kind`` from ``path`` as a voxtok ``Codec`` (eval mode).

    Args:
        kind: one of ``KINDS`` (``hf-encodec``, ``hf-dac``, ``hf-mimi``, ``hf-xcodec2``, ``dac``, ``moshi-mimi``).
        path: the source: a transformers directory, a ``.pth`` file or a safetensors file (see the module doc).
        trust_pickle: allow reading a pickle-based ``.pth`` (only kinds that need it); even then the file is
            read with ``torch.load(weights_only=True)``.

    Raises:
        ValueError: unknown kind; a pickle without ``trust_pickle``; a source whose tensors do not fit its config
            (a missing, extra or misshaped tensor is named).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown convert kind {kind!r}; choose one of {sorted(KINDS)}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory")
    if kind in _PICKLE_KINDS and not trust_pickle:
        raise ValueError(f"{kind} checkpoints are pickles, which can run code when read; pass trust_pickle=True "
                         f"(CLI: --trust-pickle) only for a file from a source you trust")
    module, function = KINDS[kind]
    return getattr(importlib.import_module(f"voxtok.codecs.convert.{module}"), function)(path)


def cli_convert(args: argparse.Namespace) -> int:
    """``voxtok convert KIND PATH OUT_DIR [--trust-pickle]``: convert and ``save_pretrained`` into OUT_DIR."""
    codec = convert(args.kind, args.path, trust_pickle=getattr(args, "trust_pickle", False))
    out = codec.save_pretrained(args.out_dir)
    n = sum(p.numel() for p in codec.parameters())
    print(f"converted {args.kind} {args.path} -> {out} ({codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, "
          f"{codec.num_codebooks} x {codec.codebook_size} codes, {n / 1e6:.1f}M parameters)")
    return 0


def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``convert`` subcommand (handler: ``cli_convert``) on a CLI's subparsers."""
    p = subparsers.add_parser("convert", help="convert published codec weights into a voxtok directory")
    p.add_argument("kind", choices=sorted(KINDS), help="source format")
    p.add_argument("path", help="source directory or file")
    p.add_argument("out_dir", help="where to write config.json + model.safetensors")
    p.add_argument("--trust-pickle", action="store_true", help="allow reading a pickle-based .pth checkpoint")
    p.set_defaults(func=cli_convert)
    return p
