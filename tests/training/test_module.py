"""CodecModule in short CPU runs: step counting, skipped non-finite updates, validation metrics and codebook health,
a short run that learns, export, precision, the balancer and a wall-clock budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

import voxtok
from voxtok.training import CodecModule, LibriSpeechDataModule
from voxtok.training.cli import export_checkpoint

TRAIN, VAL = "train-clean-100", "dev-clean"
GAN = {"mel": {"weight": 1.0}, "adversarial": {"weight": 1.0}, "feature_matching": {"weight": 1.0},
       "quantizer": {"weight": 1.0}}  # fmt: skip
TINY_D = {"mpd": {"tiny": True}}


def _data(root: Path, **kw: Any) -> LibriSpeechDataModule:
    args = dict(train_subsets=[TRAIN], val_subsets=[VAL], segment_seconds=0.1, batch_size=2, num_workers=0,
                val_max_seconds=0.5)  # fmt: skip
    args.update(kw)
    return LibriSpeechDataModule(root, **args)


def _trainer(tmp_path: Path, **kw: Any) -> pl.Trainer:
    args = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                enable_checkpointing=False, default_root_dir=tmp_path, num_sanity_val_steps=0, limit_val_batches=0)
    args.update(kw)
    return pl.Trainer(**args)


def _params(m: CodecModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_max_steps_counts_generator_updates(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("dac-16khz-tiny", losses=GAN, discriminators=TINY_D, disc_start_step=1, scheduler="cosine")
    t = _trainer(tmp_path, max_steps=3)
    t.fit(m, _data(corpus))
    assert t.global_step == 3
    opt_g, opt_d = t.optimizers
    # three generator updates (quantizer dropout leaves some codebooks out of some of them) ...
    assert max(int(s["step"]) for s in opt_g.state.values()) == 3
    assert {int(s["step"]) for s in opt_d.state.values()} == {2}  # ... and two discriminator ones (start at 1)
    sch_g, sch_d = (c.scheduler for c in t.lr_scheduler_configs)
    assert (sch_g.last_epoch, sch_d.last_epoch) == (3, 2)


class _Poisoned(CodecModule):
    """Puts a NaN into the audio of batch ``at`` and records the weights around that step."""

    at = 1

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if batch_idx == self.at:
            batch["audio"][0, 0, 10] = float("nan")
            self.before = _params(self)

    def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
        if batch_idx == self.at:
            self.after = _params(self)


def test_nan_batch_is_skipped_and_counted(corpus: Path, tmp_path: Path) -> None:
    m = _Poisoned("dac-16khz-tiny", losses=GAN, discriminators=TINY_D)
    t = _trainer(tmp_path, max_steps=3)
    t.fit(m, _data(corpus))
    assert m.skipped_updates == 1 and t.global_step == 3  # the skipped update still counts as a step
    assert all(torch.equal(m.before[k], m.after[k]) for k in m.before)  # codec and discriminators untouched
    assert all(torch.isfinite(v).all() for v in m.state_dict().values() if v.is_floating_point())
    assert not all(torch.equal(m.before[k], v) for k, v in m.state_dict().items())  # later steps did train


def _nan_term(m: CodecModule, name: str, value: bool) -> None:
    original = m.objective.reconstruction

    def poisoned(y: torch.Tensor, x: torch.Tensor, lengths: Any) -> dict[str, torch.Tensor]:
        terms = original(y, x, lengths)
        if value:
            terms[name] = terms[name] * float("nan")
        else:  # a finite value whose gradient is NaN: d sqrt(u) / du at u = 0, times 0
            terms[name] = terms[name] + 0.0 * (y - y.detach()).abs().sqrt().sum()
        return terms

    m.objective.reconstruction = poisoned  # type: ignore[method-assign]


def test_nonfinite_gradient_is_skipped(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("dac-16khz-tiny", losses={"mel": {"weight": 1.0}})
    before = _params(m)
    _nan_term(m, "mel", value=False)
    t = _trainer(tmp_path, max_steps=2)
    t.fit(m, _data(corpus))
    assert m.skipped_updates == 2 and t.global_step == 2
    after = m.state_dict()
    # weights untouched; only the quantizer's EMA statistics (updated in the forward pass) may move
    assert all(torch.equal(before[k], after[k]) for k in before if "ema" not in k and "codebook" not in k)
    assert not t.optimizers[0].state  # AdamW never stepped


def test_repeated_nonfinite_loss_stops_naming_step_and_term(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("dac-16khz-tiny", losses={"mel": {"weight": 1.0}, "quantizer": {"weight": 1.0}},
                    max_nonfinite=2)  # fmt: skip
    _nan_term(m, "mel", value=True)
    with pytest.raises(RuntimeError, match=r"stopped at step 1: 2 non-finite updates in a row.*term 'mel' is nan"):
        _trainer(tmp_path, max_steps=5).fit(m, _data(corpus))


def test_validation_metrics_and_codebook_health(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("dac-16khz-tiny", losses={"mel": {"weight": 1.0}}, val_perceptual_utterances=2)
    out = _trainer(tmp_path, limit_val_batches=None).validate(m, _data(corpus, val_batch_size=2))[0]
    for name in ("val/mel_distance", "val/stft_distance", "val/si_sdr", "val/stoi", "val/pesq_wb"):
        assert name in out and out[name] == out[name]  # present and not NaN
    assert out["val/mel_distance"] > 0
    k = m.codec.codebook_size
    for q in range(m.codec.num_codebooks):
        used = round(out[f"val/codebook/usage/q{q}"] * k)
        assert 1 <= used <= k and out[f"val/codebook/dead/q{q}"] == k - used
        assert 1.0 <= out[f"val/codebook/perplexity/q{q}"] <= used + 1e-3
    assert out["val/codebook/dead/sum"] == sum(out[f"val/codebook/dead/q{q}"] for q in range(4))


def test_short_run_lowers_validation_mel_distance(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("dmcodec-50hz-tiny", losses={"mel": {"weight": 1.0}, "stft": {"weight": 1.0},
                                                 "quantizer": {"weight": 1.0}},
                    lr=3e-3, betas=(0.9, 0.99), scheduler="cosine", warmup_steps=5,
                    val_perceptual_utterances=0)  # fmt: skip
    data = _data(corpus, segment_seconds=0.25, batch_size=4, val_batch_size=4)
    before = _trainer(tmp_path, limit_val_batches=None).validate(m, data)[0]["val/mel_distance"]
    _trainer(tmp_path, max_steps=30).fit(m, data)
    after = _trainer(tmp_path, limit_val_batches=None).validate(m, data)[0]["val/mel_distance"]
    print(f"validation mel distance before {before:.3f}, after {after:.3f}")
    assert after < 0.8 * before, (before, after)


def test_export_then_load_gives_the_same_codes(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("wavtokenizer-40hz-tiny", losses={"mel": {"weight": 1.0}, "quantizer": {"weight": 1.0}})
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = _trainer(tmp_path, max_steps=2, enable_checkpointing=True, callbacks=[ckpt])
    t.fit(m, _data(corpus))
    raw = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)  # tensors and plain containers only
    assert raw["global_step"] == 2
    out = export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "exported")
    loaded = voxtok.load(out)
    x = torch.randn(2, 1, 4000) * 0.1
    assert torch.equal(loaded.encode(x).codes, m.codec.eval().encode(x).codes)
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), m.codec.decode(m.codec.encode(x)))


def test_fine_tuning_starts_from_a_directory(tmp_path: Path) -> None:
    source = voxtok.load("dac-16khz-tiny")
    source.save_pretrained(tmp_path / "codec")
    m = CodecModule(str(tmp_path / "codec"), quantizer_dropout=0.0)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), m.codec.state_dict().values(),
                                                  strict=True))  # fmt: skip
    assert m.codec.quantizer.quantizer_dropout == 0.0
    with pytest.raises(ValueError, match="quantizer_dropout"):  # a single VQ has no dropout to override
        CodecModule("wavtokenizer-75hz-tiny", quantizer_dropout=0.5)
    with pytest.raises(ValueError, match="neither a preset"):
        CodecModule(str(tmp_path / "missing"))


def test_balancer_run_saves_its_state(corpus: Path, tmp_path: Path) -> None:
    losses = {"msspec": {"type": "mel", "weight": 2.0, "window_lengths": [64, 128], "n_mels": 16},
              "waveform": {"weight": 0.1}, "adversarial": {"weight": 4.0, "reduction": "mean"},
              "feature_matching": {"weight": 4.0, "relative": True}, "quantizer": {"weight": 4.0}}  # fmt: skip
    m = CodecModule("encodec-24khz-tiny", losses=losses, discriminators={"msstft": {"tiny": True}}, balancer={})
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = _trainer(tmp_path, max_steps=2, enable_checkpointing=True, callbacks=[ckpt])
    t.fit(m, _data(corpus))
    assert m.skipped_updates == 0
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["voxtok"]["balancer"]
    assert set(state["sum"]) == {"msspec", "waveform", "adversarial", "feature_matching"}
    fresh = CodecModule("encodec-24khz-tiny", losses=losses, discriminators={"msstft": {"tiny": True}}, balancer={})
    fresh.on_load_checkpoint({"voxtok": {"balancer": state}})
    assert fresh.balancer._ema_count == m.balancer._ema_count


def test_bf16_mixed_step_keeps_weights_finite(corpus: Path, tmp_path: Path) -> None:
    m = CodecModule("mimi-12.5hz-tiny", losses=GAN, discriminators=TINY_D)
    t = _trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    t.fit(m, _data(corpus, segment_seconds=0.2))
    assert m.skipped_updates == 0 and t.global_step == 2
    assert all(torch.isfinite(v).all() for v in m.state_dict().values() if v.is_floating_point())


def test_wall_clock_budget_drives_the_cosine_schedule(corpus: Path, tmp_path: Path) -> None:
    # The demo's set-up: GAN-free FSQ codec, spectral losses, warm-up then cosine over a fixed time budget.
    losses = {"stft": {"weight": 1.0, "fft_sizes": [256, 512], "hop_lengths": [64, 128], "win_lengths": [256, 512]},
              "mel": {"weight": 1.0, "window_lengths": [256, 512], "n_mels": 32}}  # fmt: skip
    m = CodecModule("xcodec2-50hz-tiny", losses=losses, lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01,
                    scheduler="cosine", warmup_steps=2)  # fmt: skip
    t = _trainer(tmp_path, max_time={"seconds": 4})
    t.fit(m, _data(corpus))
    sch = t.lr_scheduler_configs[0].scheduler
    assert t.global_step >= 2 and sch.last_epoch == t.global_step
    assert sch.get_last_lr()[0] < 0.5 * 2e-3  # most of the budget was spent: the rate has come down


def test_bad_loss_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a 'weight'"):
        CodecModule("dac-16khz-tiny", losses={"mel": {}})
    with pytest.raises(ValueError, match="unknown type 'mell'"):
        CodecModule("dac-16khz-tiny", losses={"mell": {"weight": 1.0}})
    with pytest.raises(ValueError, match="need discriminators"):
        CodecModule("dac-16khz-tiny", losses={"adversarial": {"weight": 1.0}})
    with pytest.raises(ValueError, match="unknown discriminator 'msd'"):
        CodecModule("dac-16khz-tiny", discriminators={"msd": {}})
    with pytest.raises(ValueError, match=r"loss_weights names \['stft'\]"):
        CodecModule("dac-16khz-tiny", loss_weights={"stft": 2.0})
    with pytest.raises(ValueError, match="scheduler must be one of"):
        CodecModule("dac-16khz-tiny", scheduler="step")
    m = CodecModule("dac-16khz-tiny", losses={"mel": {"weight": 15.0}}, loss_weights={"mel": 30.0})
    assert m.objective.weights == {"mel": 30.0}


def test_generator_optimizer_is_fused_adamw_and_its_state_loads_into_the_plain_one() -> None:
    from voxtok.training.module import _adamw

    torch.manual_seed(0)
    w = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    v = [torch.nn.Parameter(t.detach().clone()) for t in w]
    fused, plain = _adamw(w, lr=1e-2, weight_decay=0.01), torch.optim.AdamW(v, lr=1e-2, weight_decay=0.01)
    assert fused.defaults["fused"] is True
    for _ in range(3):
        for params, opt in ((w, fused), (v, plain)):
            opt.zero_grad()
            sum((p**2).sum() for p in params).backward()
            opt.step()
    for a, b in zip(w, v, strict=True):
        torch.testing.assert_close(a, b)
    plain.load_state_dict(fused.state_dict())  # a checkpoint written with one resumes with the other
    assert _adamw([torch.nn.Parameter(torch.zeros(2, device="meta"))], lr=1e-3).defaults["fused"] is None
