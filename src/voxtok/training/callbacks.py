"""Callbacks ``voxtok fit`` adds by default (reconstructions for TensorBoard, a throughput monitor) and a progress
bar over a whole time-budgeted run (``BudgetProgressBar``, what the demo recipe uses)."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar, Timer
from lightning.pytorch.utilities import rank_zero_only

from voxtok.training.health import mel_image

__all__ = ["BudgetProgressBar", "LastCheckpointOnStop", "ReconstructionLogger", "ThroughputMonitor"]


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


class BudgetProgressBar(ProgressBar):
    """One progress bar over the whole run instead of one per epoch: the wall-clock budget
    (``--trainer.max_time``) in seconds when there is one, else ``max_steps`` generator updates; the ETA is the
    time left in that budget. The postfix shows the generator updates done, their rate and the last loss.

    A run on a time budget has no meaningful epoch count (``Epoch 3/-2`` in Lightning's bar), which is why a recipe
    with ``max_time`` wants this bar:
    ``trainer.callbacks: [{class_path: voxtok.training.callbacks.BudgetProgressBar}]``.

    Args:
        refresh_seconds: least time between redraws (a redraw per step floods a log file).
    """

    def __init__(self, refresh_seconds: float = 1.0) -> None:
        super().__init__()
        self.refresh_seconds = float(refresh_seconds)
        self._enabled = True
        self._bar: Any = None
        self._timer: Timer | None = None
        self._last_draw = 0.0
        self._start_step = 0
        self._start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.trainer.is_global_zero

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.is_enabled:
            return
        from tqdm.auto import tqdm

        self._timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        budget = self._timer._duration if self._timer is not None else None
        self._start_step, self._start = trainer.global_step, time.perf_counter()
        if budget:
            self._bar = tqdm(total=round(budget), unit="s", desc="training", dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} s "
                                        "[{elapsed}<{remaining}]{postfix}")
        else:
            total = trainer.max_steps if trainer.max_steps > 0 else None
            self._bar = tqdm(total=total, unit="step", desc="training", dynamic_ncols=True)
        self._bar.n = self._elapsed(trainer)

    def _elapsed(self, trainer: pl.Trainer) -> float:
        if self._timer is not None and self._timer._duration:
            # What the Timer will stop on (it resumes from a checkpoint's elapsed time), capped at the budget.
            return min(float(self._timer.time_elapsed("train")), float(self._bar.total))
        return float(trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.refresh_seconds:
            return
        self._last_draw = now
        steps = trainer.global_step
        rate = (steps - self._start_step) / max(now - self._start, 1e-9)
        loss = trainer.callback_metrics.get("train/g_loss")
        post = f"step {steps}, {rate:.2f} steps/s" + (f", loss {float(loss):.3f}" if loss is not None else "")
        self._bar.n = self._elapsed(trainer)
        self._bar.set_postfix_str(post, refresh=False)
        self._bar.refresh()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.n = self._elapsed(trainer)
            self._bar.close()
            self._bar = None


class LastCheckpointOnStop(Callback):
    """Write ``last.ckpt`` when training ends, so a run stopped by its time budget (``--trainer.max_time``) keeps
    the updates made since the last periodic checkpoint (``ModelCheckpoint`` saves every N steps, and a time stop
    in the middle of an epoch does not trigger it). The file goes where the first ``ModelCheckpoint`` writes;
    nothing is written when there is none or when the step count has not moved since its last save.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if ckpt is None or ckpt.dirpath is None:
            return
        path = os.path.join(ckpt.dirpath, ckpt.CHECKPOINT_NAME_LAST + ckpt.FILE_EXTENSION)
        if getattr(ckpt, "_last_global_step_saved", -1) == trainer.global_step and os.path.isfile(path):
            return
        # Every rank calls it; the strategy writes once. A full checkpoint (optimizer, loops): resuming needs it.
        trainer.save_checkpoint(path, weights_only=False)
