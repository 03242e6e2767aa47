"""``voxtok fit`` reaches LightningCLI with the rest of argv; ``voxtok export`` turns a checkpoint into a codec."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxtok.cli import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "librispeech" / "dac-24khz.yaml"


def test_fit_help_says_max_steps_counts_generator_updates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fit", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--trainer.max_steps" in text and "GENERATOR updates" in text and "--model.codec" in text


def test_print_config_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(RECIPE), "--model.codec", "dac-16khz-tiny", "--model.loss_weights.mel", "30",
              "--print_config"])  # fmt: skip
    import yaml

    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["codec"] == "dac-16khz-tiny" and cfg["model"]["loss_weights"] == {"mel": 30.0}
    assert cfg["model"]["lr"] == 1e-4 and cfg["data"]["init_args"]["batch_size"] == 72
    assert cfg["checkpoint"]["every_n_train_steps"] == 10000 and cfg["weights_only"] is True


def test_fit_reports_a_bad_recipe_in_one_line(corpus: Path, tmp_path: Path, fit,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    rc = fit("--model.codec", "no-such-preset", "--data.class_path", "voxtok.training.LibriSpeechDataModule",
             "--data.init_args.root", str(corpus), "--trainer.default_root_dir", str(tmp_path))
    assert rc == 1
    assert "voxtok fit: error: codec 'no-such-preset' is neither a preset" in capsys.readouterr().err


def test_export_refuses_what_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), str(tmp_path / "out")]) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_bf16_arithmetic_trains_in_float32(native: bool, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    import voxtok.training.lightning_cli as lcli

    monkeypatch.setattr(lcli, "cpu_has_native_bf16", lambda: native)
    demo = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
    cli = lcli.run(["--config", str(demo), "--data.init_args.train", "x"], run=False)
    assert cli.trainer.precision == ("bf16-mixed" if native else "32-true")
    assert ("would be emulated" in caplog.text) != native
    # Asked for explicitly, emulated bf16 is kept; other accelerators and precisions are left alone.
    cli = lcli.run(["--config", str(demo), "--data.init_args.train", "x", "--emulated_bf16", "true"], run=False)
    assert cli.trainer.precision == "bf16-mixed"
    assert lcli.cpu_precision("16-mixed", "cpu") == "16-mixed"
    assert lcli.cpu_precision("bf16-true", "cuda") == "bf16-true"
    assert lcli.cpu_precision("bf16-true", "cpu") == ("bf16-true" if native else "32-true")
