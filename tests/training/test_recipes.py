"""Every LibriSpeech recipe loads for real and runs one optimization step on the tiny variant of its preset, with
tiny local teachers in place of the Hugging Face ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import voxtok

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "librispeech").glob("*.yaml"))


def test_every_family_has_a_recipe() -> None:
    names = {p.stem for p in RECIPES}
    assert {"wavtokenizer-75hz", "wavtokenizer-40hz", "dmcodec-50hz", "cat-12.5hz", "mimi-12.5hz", "xcodec2-50hz",
            "dac-24khz", "encodec-24khz", "finetune"} <= names  # fmt: skip


def _one_step(recipe: Path, corpus: Path, teachers: dict[str, str], tmp_path: Path, fit, tiny_d: bool) -> None:
    cfg = yaml.safe_load(recipe.read_text())
    model = cfg["model"]
    if Path(model["codec"]).name == model["codec"]:
        codec = f"{model['codec']}-tiny"
    else:  # a fine-tuning recipe starts from a directory: give it a saved tiny codec
        codec = str(voxtok.load("dac-24khz-tiny").save_pretrained(tmp_path / "converted"))
    used = {k: v for k, v in teachers.items() if k in model["losses"]}
    # The recipe's discriminators with their settings, at their tiny() widths (as the codec is its -tiny variant).
    discs = {name: {**(args or {}), "tiny": tiny_d} for name, args in (model.get("discriminators") or {}).items()}
    out = tmp_path / "run"
    rc = fit("--config", str(recipe), "--model.codec", codec, "--data.root", str(corpus),
             "--data.train_subsets", "[train-clean-100]", "--data.batch_size", "2", "--data.segment_seconds", "0.15",
             "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.precision", "32",
             "--trainer.default_root_dir", str(out),
             "--model.teachers", str(used), "--model.discriminators", str(discs), "--model.warmup_steps", "0",
             "--model.total_steps", "10")  # fmt: skip
    assert rc == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 1 and ckpt["voxtok"]["skipped_updates"] == 0
    hp = ckpt["hyper_parameters"]
    assert hp["losses"] == model["losses"] and hp["lr"] == model["lr"]  # the recipe's settings, not defaults
    for name in model.get("discriminators") or {}:
        assert any(k.startswith(f"discriminators.{name}.") for k in ckpt["state_dict"])
    weights = [v for k, v in ckpt["state_dict"].items() if k.startswith("codec.") and v.is_floating_point()]
    assert weights and all(torch.isfinite(v).all() for v in weights)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_one_step(recipe: Path, corpus: Path, teachers: dict[str, str], tmp_path: Path, fit) -> None:
    _one_step(recipe, corpus, teachers, tmp_path, fit, tiny_d=True)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_one_step_with_full_size_discriminators(recipe: Path, corpus: Path, teachers: dict[str, str],
                                                            tmp_path: Path, fit) -> None:  # fmt: skip
    _one_step(recipe, corpus, teachers, tmp_path, fit, tiny_d=False)
