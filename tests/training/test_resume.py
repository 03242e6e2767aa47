"""Kill and resume: a ``voxtok fit`` process killed with SIGKILL after the checkpoint at step k, resumed with
``--ckpt_path last``, ends with exactly the weights of an uninterrupted run (CPU, one thread, same seed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

KILLER = '''
import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAt(Callback):
    """SIGKILL this process at the end of update `step` (a crash: no cleanup, no final checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _config(corpus: Path, root: Path, kill_at: int | None = None) -> dict:
    cfg = {
        "seed_everything": 7,
        "trainer": {"accelerator": "cpu", "max_steps": 6, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(root), "val_check_interval": 3,
                    "check_val_every_n_epoch": None, "limit_val_batches": 1, "num_sanity_val_steps": 1},
        "checkpoint": {"every_n_train_steps": 2, "save_top_k": -1},
        "model": {
            # quantizer dropout (random), discriminators (a second optimizer), a cosine schedule with warm-up
            "codec": "dac-16khz-tiny", "scheduler": "cosine", "warmup_steps": 2, "lr": 1e-3,
            "losses": {"mel": {"weight": 1.0}, "adversarial": {"weight": 1.0}, "feature_matching": {"weight": 1.0},
                       "quantizer": {"weight": 1.0}},
            "discriminators": {"mpd": {"tiny": True}}, "val_perceptual_utterances": 0,
        },
        "data": {"class_path": "voxtok.training.LibriSpeechDataModule",
                 "init_args": {"root": str(corpus), "train_subsets": ["train-clean-100"], "val_subsets": ["dev-clean"],
                               "segment_seconds": 0.1, "batch_size": 2, "num_workers": 0, "val_max_seconds": 0.3}},
    }  # fmt: skip
    if kill_at is not None:
        cfg["trainer"]["callbacks"] = [{"class_path": "killer.KillAt", "init_args": {"step": kill_at}}]
    return cfg


def _run(cfg: dict, path: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "voxtok.cli", "fit", "--config", str(path), *extra], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_killed_run_resumes_to_the_same_weights(corpus: Path, tmp_path: Path, child_env, fit) -> None:
    (tmp_path / "killer.py").write_text(KILLER)
    env = child_env(tmp_path)
    (tmp_path / "full.yaml").write_text(yaml.safe_dump(_config(corpus, tmp_path / "full")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fit("--config", str(tmp_path / "full.yaml")) == 0  # the uninterrupted run, in this process
    # Lightning's manual-optimization checkpoint hint (a code listing) does not apply to voxtok and is not shown.
    assert not [w for w in caught if "manual optimization" in str(w.message)]

    crashed = _run(_config(corpus, tmp_path / "crash", kill_at=3), tmp_path / "crash.yaml", env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    ckpts = sorted(p.name for p in (tmp_path / "crash" / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step=2.ckpt"]  # killed after the step-2 checkpoint, before step 4

    resumed = _run(_config(corpus, tmp_path / "crash"), tmp_path / "resume.yaml", env, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "crash" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["state_dict"].keys() == b["state_dict"].keys()
    different = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not different, different[:5]
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for s_a, s_b in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            assert all(torch.equal(s_a[k], s_b[k]) for k in s_a)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert a["loops"]["fit_loop"]["state_dict"]["combined_loader"] == b["loops"]["fit_loop"]["state_dict"][
        "combined_loader"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
