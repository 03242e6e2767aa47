"""``voxtok fit``: ``LightningCLI`` over ``CodecModule`` and the voxtok data modules (imports Lightning)."""

from __future__ import annotations

import os
import sys
from typing import Any

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


class VoxtokCLI(LightningCLI):
    """The Lightning CLI with voxtok's defaults: step checkpoints, reconstruction and throughput logging, and
    checkpoints read with ``weights_only=True``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.every_n_train_steps": 1000, "checkpoint.save_last": True,
                             "checkpoint.save_top_k": 1, "checkpoint.filename": "{step}"})
        parser.add_lightning_class_args(ReconstructionLogger, "audio_log")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
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


def run(args: list[str], run: bool = True) -> VoxtokCLI:
    """Run ``voxtok fit ARGS`` (the arguments after ``fit``); ``run=False`` only builds the trainer, model and data
    module (``cli.trainer``, ``cli.model``, ``cli.datamodule``) from the same arguments."""
    # LightningCLI reads sys.argv, and so does Lightning's DDP launcher when it starts the other ranks: both must see
    # `fit ARGS`, also when voxtok.cli.main is called from Python.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "voxtok", *(["fit"] if run else []), *args]
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
