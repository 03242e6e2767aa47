"""``voxtok fit``: ``LightningCLI`` over ``CodecModule`` and the voxtok data modules (imports Lightning)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from voxtok.training.callbacks import ReconstructionLogger, ThroughputMonitor
from voxtok.training.data import CodecDataModule
from voxtok.training.module import CodecModule

MAX_STEPS_HELP = (
    "Stop after this many GENERATOR updates (one per batch), whatever the number of optimizers: discriminator "
    "steps are not counted, unlike plain Lightning GANs (-1: no limit; then max_epochs or max_time)."
)

DESCRIPTION = """Train a voxtok codec with Lightning:
  voxtok fit --config recipes/librispeech/RECIPE.yaml [--key value ...]

--trainer.max_steps N means N generator updates (discriminator updates are not counted). Every argument of a recipe
can be overridden on the command line (--model.codec dac-24khz-tiny, --data.batch_size 8, --model.loss_weights.mel 30,
--model.teachers.ssl LOCAL_DIR); --print_config shows the result. Checkpoints go to --checkpoint.dirpath (default:
DEFAULT_ROOT_DIR/checkpoints) every --checkpoint.every_n_train_steps updates; --ckpt_path last resumes from the latest.
Turn a checkpoint into a codec directory with: voxtok export CKPT OUT_DIR."""


log = logging.getLogger("voxtok.training")

EMULATED_BF16_HELP = (
    "Train in bf16 on a CPU that has no bf16 arithmetic (AVX-512 BF16 or AMX). Off by default: torch then emulates "
    "bf16 at about 16x the time per step of float32, so voxtok fit trains such a recipe in 32-true instead and says so."
)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 AVX-512 BF16 or AMX). Without it torch's bf16 kernels
    convert to float32 and back around every operation: a ``bf16-mixed`` demo step took 10.2 s instead of float32's
    0.62 s on an AVX2-only CPU."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # private: absent from some builds
        check = getattr(torch.cpu, name, None)
        if check is not None and check():
            return True
    try:  # torch builds without the checks above: the kernel's flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _on_cpu(accelerator: Any) -> bool:
    name = str(accelerator or "auto").lower()
    return name == "cpu" or (name == "auto" and not torch.cuda.is_available())


def cpu_precision(precision: Any, accelerator: Any, allow_emulated_bf16: bool = False) -> Any:
    """The precision ``voxtok fit`` trains in: ``precision`` itself, except a bf16 precision on a CPU without bf16
    arithmetic (see ``cpu_has_native_bf16``), which becomes ``"32-true"`` unless ``allow_emulated_bf16``."""
    if allow_emulated_bf16 or not str(precision).startswith("bf16") or not _on_cpu(accelerator):
        return precision
    return precision if cpu_has_native_bf16() else "32-true"


class VoxtokCLI(LightningCLI):
    """The Lightning CLI with voxtok's defaults: step checkpoints, reconstruction and throughput logging, and
    checkpoints read with ``weights_only=True``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.every_n_train_steps": 1000, "checkpoint.save_last": True,
                             "checkpoint.save_top_k": 1, "checkpoint.filename": "{step}"})
        parser.add_lightning_class_args(ReconstructionLogger, "audio_log")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
        parser.add_argument("--emulated_bf16", type=bool, default=False, help=EMULATED_BF16_HELP)
        for action in parser._actions:
            if action.dest == "trainer.max_steps":
                action.help = MAX_STEPS_HELP

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if any(a.dest == "weights_only" for a in parser._actions):  # the method's own arguments come last
            parser.set_defaults({"weights_only": True})
        return parser

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("checkpoint") is not None and cfg.checkpoint.get("dirpath") is None:
            root = cfg.trainer.get("default_root_dir") or os.getcwd()
            cfg.checkpoint.dirpath = os.path.join(str(root), "checkpoints")
        asked = cfg.trainer.get("precision")
        chosen = cpu_precision(asked, cfg.trainer.get("accelerator"), bool(cfg.get("emulated_bf16")))
        if chosen != asked:
            log.warning("voxtok fit: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX), so precision %s would be "
                        "emulated at about 16x the time per step; training in %s instead (--emulated_bf16 true "
                        "keeps %s)", asked, chosen, asked)
            cfg.trainer.precision = chosen


def run(args: list[str], run: bool = True) -> VoxtokCLI:
    """Run ``voxtok fit ARGS`` (the arguments after ``fit``); ``run=False`` only builds the trainer, model and data
    module (``cli.trainer``, ``cli.model``, ``cli.datamodule``) from the same arguments."""
    # LightningCLI reads sys.argv, and so does Lightning's DDP launcher when it starts the other ranks: both must see
    # `fit ARGS`, also when voxtok.cli.main is called from Python.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "voxtok", *(["fit"] if run else []), *args]
    with warnings.catch_warnings():
        # Lightning's hint for manual optimization with step checkpoints (a code listing, printed at the first
        # periodic save) is about keeping the weights from before a step's update. voxtok's checkpoint after update N
        # holds the weights, optimizer state and counters of that one moment, which is what resuming needs.
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization",
                                category=UserWarning)
        try:
            return VoxtokCLI(
                CodecModule,
                CodecDataModule,
                subclass_mode_data=True,
                run=run,
                save_config_kwargs={"overwrite": True},
                auto_configure_optimizers=False,
                parser_kwargs={"fit": {"description": DESCRIPTION}} if run else {"description": DESCRIPTION},
            )
        finally:
            sys.argv = saved
