"""``voxtok demo`` end to end: corpus, ``voxtok fit`` on the demo recipe, export, extraction, evaluation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from voxtok.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    import contextlib
    import io

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        status = main(["demo", "--minutes", "0.2", "--out", str(out), "--no-progress"])
    assert status == 0, log.getvalue()[-3000:]
    return out, log.getvalue()


def test_demo_writes_every_stage_and_each_loads(demo_run: tuple[Path, str], tmp_path: Path) -> None:
    import torch

    import voxtok.audio as A
    from voxtok.codecs.loading import load
    from voxtok.tokenizers import read_tokens

    out, log = demo_run
    # corpus: espeak-ng training speech plus the shipped real recordings
    corpus = json.loads((out / "corpus" / "corpus.json").read_text())
    assert len(corpus["train"]) >= 288 and len(corpus["evaluation"]) == 5
    # training ran through voxtok fit: a checkpoint and TensorBoard events
    assert (out / "train" / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "train").rglob("events.out.tfevents.*"))
    record = json.loads((out / "model" / "demo-training.json").read_text())
    assert record["steps"] >= 1 and record["preset"] == "stft-fsq-50hz"
    # the exported step is the last one: the checkpoint was written when the 12-second budget ran out
    ckpt = torch.load(out / "train" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    timer = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Timer"))
    assert timer["time_elapsed"]["train"] >= 12.0 and ckpt["global_step"] == record["steps"]
    # the export loads like any codec, and `voxtok encode` / `decode` use it
    codec = load(out / "model")
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks) == (16000, 50.0, 4)
    clip = sorted((out / "corpus" / "eval").glob("*.flac"))[0]
    assert main(["encode", str(out / "model"), str(clip), str(tmp_path / "t.npz")]) == 0
    assert main(["decode", str(out / "model"), str(tmp_path / "t.npz"), str(tmp_path / "y.wav")]) == 0
    y, sr = A.read(tmp_path / "y.wav")
    x, sr_x = A.read(clip)
    assert sr == 16000 and y.shape[-1] == x.shape[-1] and torch.isfinite(y).all()
    # the trained weights differ from a fresh initialisation (training changed them)
    torch.manual_seed(0)
    fresh = load("stft-fsq-50hz")
    assert not torch.equal(fresh.state_dict()["encoder.embed.weight"], codec.state_dict()["encoder.embed.weight"])
    # tokens for every training utterance, in the codec's shape
    tokens = dict(read_tokens(out / "tokens"))
    assert len(tokens) == len(corpus["train"])
    assert all(c.shape[0] == 4 and int(c.max()) < codec.codebook_size for c in tokens.values())
    # the evaluation: report, spectrograms, reconstructions and the demo's numbers
    ev = out / "eval"
    assert (ev / "report.md").is_file() and (ev / "results.json").is_file()
    assert len(list((ev / "plots").glob("*.png"))) >= 5
    assert len(list((ev / "audio").rglob("*.wav"))) >= 10  # 5 recordings x 2 systems
    rows = json.loads((ev / "demo.json").read_text())["rows"]
    assert set(rows) == {"untrained", "trained"}
    for row in rows.values():
        assert 0.0 <= row["stoi"] <= 1.0 and math.isfinite(row["mel_distance"]) and math.isfinite(row["si_sdr"])
        assert row["bitrate_kbps"] == pytest.approx(3.0) and row["tokens_per_second"] == 200
        assert row["encode_rtf"] > 0 and row["decode_rtf"] > 0 and 0 < row["codebook_usage"] <= 1
    # the printed table names every measure and says where things are
    for label in ("STOI", "PESQ-WB", "mel distance", "SI-SDR", "bitrate", "codebook usage", "tokens / s",
                  "encode RTF", "decode RTF", "report.md", "spectrograms"):  # fmt: skip
        assert label in log, label


def test_second_run_reuses_the_model(demo_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = demo_run
    weights = out / "model" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert main(["demo", "--minutes", "0.2", "--out", str(out), "--no-progress"]) == 0
    assert "reusing the codec trained before" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == before


def test_interrupted_training_resumes_from_its_checkpoint(demo_run: tuple[Path, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # A run killed after its last checkpoint but before the export: the model folder is missing.
    src, _ = demo_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    steps = json.loads((out / "model" / "demo-training.json").read_text())["steps"]
    shutil.rmtree(out / "model")
    assert main(["demo", "--minutes", "0.2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "resuming the interrupted training run" in printed
    # The budget was already spent, so the resumed run stops at once: no step is trained twice.
    assert json.loads((out / "model" / "demo-training.json").read_text())["steps"] == steps


@pytest.mark.parametrize("minutes", ["0", "-1", "nan"])
def test_bad_budget_is_refused(minutes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--minutes", minutes, "--out", str(tmp_path)]) == 1
    assert "minutes must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "train").exists()


@pytest.mark.slow
def test_default_budget_reaches_the_stoi_floor(tmp_path: Path) -> None:
    """The full demo (10 minutes of training on a 2-core CPU): mean STOI >= 0.75 on the unseen real speech."""
    from voxtok.demo.run import run_demo

    result = run_demo(tmp_path / "out", minutes=10.0, progress=False)
    stoi = result.rows["trained"]["stoi"]
    assert stoi >= 0.75, f"mean STOI {stoi:.3f} after {result.training['steps']} steps"
    assert result.rows["trained"]["bitrate_kbps"] <= 3.0 + 1e-9
    assert np.isfinite(result.rows["trained"]["pesq_wb"])
