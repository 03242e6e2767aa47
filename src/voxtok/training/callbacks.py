"""Callbacks ``voxtok fit`` adds by default: reconstructions for TensorBoard and a throughput monitor."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from voxtok.training.health import mel_image

__all__ = ["ReconstructionLogger", "ThroughputMonitor"]


def _writer(trainer: pl.Trainer) -> Any:
    """TensorBoard's SummaryWriter of the first logger that has one (other loggers get scalars only)."""
    for logger in trainer.loggers:
        exp = getattr(logger, "experiment", None)
        if hasattr(exp, "add_audio") and hasattr(exp, "add_image"):
            return exp
    return None


class ReconstructionLogger(Callback):
    """Input and reconstruction, as audio and log-mel images, in TensorBoard.

    Every ``every_n_steps`` generator updates the first item of the training batch, and after each validation the
    first ``num_items`` validation utterances (cut to their length).

    Args:
        every_n_steps: training cadence (0 = never during training).
        num_items: validation utterances to show.
    """

    def __init__(self, every_n_steps: int = 1000, num_items: int = 2) -> None:
        self.every_n_steps = int(every_n_steps)
        self.num_items = int(num_items)

    @staticmethod
    def _write(writer: Any, tag: str, x: Any, y: Any, n: int, sample_rate: int, step: int) -> None:
        for name, a in (("input", x), ("reconstruction", y)):
            clip = a[..., :n].detach().float().reshape(1, -1).clamp(-1, 1).cpu()
            writer.add_audio(f"{tag}/{name}", clip, step, sample_rate=sample_rate)
            writer.add_image(f"{tag}/{name}_mel", mel_image(clip[0], sample_rate), step, dataformats="HWC")

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        step = trainer.global_step
        last = getattr(pl_module, "last_batch", None)
        if not self.every_n_steps or step % self.every_n_steps or last is None:
            return
        writer = _writer(trainer)
        if writer is not None:
            x, y, lengths = last
            self._write(writer, "train", x[0], y[0], int(lengths[0]), pl_module.codec.sample_rate, step)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        examples = getattr(pl_module, "val_examples", None)
        writer = _writer(trainer)
        if trainer.sanity_checking or examples is None or writer is None:
            return
        x, y, lengths = examples
        for i in range(min(self.num_items, x.shape[0])):
            self._write(writer, f"val/{i}", x[i], y[i], int(lengths[i]), pl_module.codec.sample_rate,
                        trainer.global_step)


class ThroughputMonitor(Callback):
    """Logs ``perf/steps_per_sec`` and ``perf/data_wait_share`` (the fraction of wall time the training loop waited
    for its next batch) every ``every_n_steps`` updates, over that window; validation time is left out.

    The wait is measured inside ``ResumableLoader`` (the time spent in the loader's ``next``); for other loaders it is
    the gap between the end of a step and the start of the next.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = int(every_n_steps)
        self._reset()

    def _reset(self) -> None:
        self._t0: float | None = None
        self._wait0 = 0.0
        self._gap = 0.0
        self._steps = 0
        self._end: float | None = None

    @staticmethod
    def _loader_wait(trainer: pl.Trainer) -> float | None:
        loader = trainer.train_dataloader
        return getattr(loader, "wait_seconds", None)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._wait0 = now, self._loader_wait(trainer) or 0.0
        elif self._end is not None:
            self._gap += now - self._end

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        now = time.perf_counter()
        self._end = now
        self._steps += 1
        if self._t0 is None or self._steps < self.every_n_steps:
            return
        wall = now - self._t0
        loader_wait = self._loader_wait(trainer)
        wait = (loader_wait - self._wait0) if loader_wait is not None else self._gap
        pl_module.log_dict({"perf/steps_per_sec": self._steps / wall, "perf/data_wait_share": wait / wall},
                           on_step=True, on_epoch=False, batch_size=1)
        self._reset()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()
