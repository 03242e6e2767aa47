"""A time-budgeted run (``--trainer.max_time``) saves its last step (``LastCheckpointOnStop``)."""

from __future__ import annotations

from pathlib import Path

import torch


def test_time_stop_saves_the_last_step(corpus: Path, tmp_path: Path, fit) -> None:
    # Periodic checkpoints every 7 steps, as the demo's every 100: when time runs out between two of them,
    # ModelCheckpoint does not save again (measured: step 98 kept with 3.98 s of a 4 s budget), so the last steps
    # survive only through LastCheckpointOnStop.
    args = ("--model.codec", "stft-fsq-50hz-tiny", "--data.class_path", "voxtok.training.LibriSpeechDataModule",
            "--data.init_args.root", str(corpus), "--data.init_args.train_subsets", "[train-clean-100]",
            "--data.init_args.val_subsets", "[dev-clean]", "--data.init_args.batch_size", "2",
            "--data.init_args.segment_seconds", "0.25", "--trainer.max_time", "00:00:00:04",
            "--trainer.max_steps", "-1", "--checkpoint.every_n_train_steps", "7",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.val_check_interval", "10000",
            "--trainer.check_val_every_n_epoch", "null",
            "--trainer.callbacks+=voxtok.training.callbacks.LastCheckpointOnStop")  # fmt: skip
    assert fit(*args) == 0
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] >= 1
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    assert timer["time_elapsed"]["train"] >= 4.0
    # The saved step is the run's final one: its optimizer state counts as many updates.
    opt_steps = ckpt["optimizer_states"][0]["state"][0]["step"]
    assert int(opt_steps) == ckpt["global_step"]
