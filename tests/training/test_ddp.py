"""DDP: two CPU processes (gloo) launched by ``voxtok fit`` train a few steps; every weight, EMA codebook and
discriminator stays identical across the ranks, and each rank saw different data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

DUMPER = '''
import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from safetensors.torch import save_file


class RankDump(Callback):
    """Each rank writes its module's state and the utterance ids it trained on."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.ids = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ids.extend(batch["id"])

    def on_train_end(self, trainer, pl_module) -> None:
        rank = trainer.global_rank
        state = {k: v.detach().cpu().contiguous() for k, v in pl_module.state_dict().items()}
        save_file(state, str(self.folder / f"rank{rank}.safetensors"))
        (self.folder / f"rank{rank}.json").write_text(json.dumps({"ids": self.ids, "world": trainer.world_size,
                                                                  "steps": trainer.global_step}))
'''


@pytest.mark.parametrize("codec", ["wavtokenizer-75hz-tiny"])  # one VQ with k-means init, EMA and dead-code restarts
def test_two_cpu_ranks_stay_identical(codec: str, corpus: Path, tmp_path: Path, child_env) -> None:
    (tmp_path / "dumper.py").write_text(DUMPER)
    cfg = {
        "seed_everything": 3,
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp_find_unused_parameters_true",
                    "max_steps": 3, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "run"), "limit_val_batches": 0,
                    "callbacks": [{"class_path": "dumper.RankDump", "init_args": {"folder": str(tmp_path)}}]},
        "model": {"codec": codec, "losses": {"mel": {"weight": 1.0}, "adversarial": {"weight": 1.0},
                                             "feature_matching": {"weight": 1.0}, "quantizer": {"weight": 1.0}},
                  "discriminators": {"mpd": {"tiny": True}}, "val_perceptual_utterances": 0},
        "data": {"class_path": "voxtok.training.LibriSpeechDataModule",
                 "init_args": {"root": str(corpus), "train_subsets": ["train-clean-100"], "val_subsets": ["dev-clean"],
                               "segment_seconds": 0.1, "batch_size": 2, "num_workers": 0}},
    }  # fmt: skip
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "voxtok.cli", "fit", "--config", str(tmp_path / "ddp.yaml")],
                         env=child_env(tmp_path), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in info] == [2, 2] and [i["steps"] for i in info] == [3, 3]
    assert not set(info[0]["ids"]) & set(info[1]["ids"])  # the ranks split the data
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys()
    assert any(k.endswith("codebook") for k in a) and any(k.startswith("discriminators.") for k in a)
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, different[:5]
