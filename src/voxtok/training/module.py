"""``CodecModule``: a codec with its discriminators and losses, trained by Lightning with manual optimization.

One training step (one batch) is one generator update, whatever the number of optimizers: the discriminators' step
goes through the strategy's optimizer step directly (mixed precision, DDP) but is not counted in
``trainer.global_step``, so ``--trainer.max_steps N`` means N generator updates and checkpoints every N steps mean
generator updates too (Vocos / WavTokenizer count both optimizers: their "2M steps" are 1M updates each).

Robustness: a non-finite input batch, encoder output, loss term or gradient skips the update (weights and
optimizer state untouched; the step still counts), is counted in ``train/skipped_updates`` and logged; after
``max_nonfinite`` in a row training stops with an error naming the step and the culprit. Every decision is taken
on all ranks at once, so DDP ranks never diverge. Under ``16-mixed`` the gradient scaler owns overflow handling.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

import voxtok.audio as A
from voxtok.codecs import Codec, preset_config, presets
from voxtok.codecs.parts import legacy_renames
from voxtok.eval import metrics as M
from voxtok.losses import GradientBalancer
from voxtok.training.health import CodeHistogram, codebook_scalars
from voxtok.training.objective import Objective, build_discriminators
from voxtok.training.schedule import lr_multiplier
from voxtok.types import CodecOutput

log = logging.getLogger("voxtok.training")


def _adamw(params: Any, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel (floating parameters on a CPU or a CUDA device): one pass over all
    tensors instead of a dozen small ops per tensor (the demo codec's 5.2 M parameters: 6 ms a step on a CPU
    instead of 24). The state dict is the same either way, so checkpoints resume across the two."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, fused=True if fused else None, **kwargs)

__all__ = ["DEFAULT_LOSSES", "CodecModule", "build_codec"]

DEFAULT_LOSSES: dict[str, dict[str, Any]] = {"mel": {"weight": 15.0}, "quantizer": {"weight": 1.0}}


def build_codec(codec: str | dict[str, Any], quantizer_dropout: float | None = None) -> Codec:
    """A codec to train: a preset name (random weights), a ``save_pretrained`` directory (fine-tuning) or a
    ``Codec.config()`` dict. ``quantizer_dropout`` overrides the quantizer's argument of that name."""
    weights = None
    if isinstance(codec, dict):
        config = copy.deepcopy(codec)
        config.setdefault("format_version", 1)
    elif Path(str(codec)).is_dir():
        folder = Path(str(codec))
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder}: not a saved codec (no config.json); save one with Codec.save_pretrained")
        config = json.loads((folder / "config.json").read_text())
        weights = folder / "model.safetensors"
    elif str(codec) in presets():
        config = preset_config(str(codec))
    else:
        raise ValueError(f"codec {codec!r} is neither a preset, a saved codec directory nor a config dict; presets: "
                         f"{', '.join(presets())}")
    if quantizer_dropout is not None:
        config.setdefault("quantizer", {}).setdefault("args", {})["quantizer_dropout"] = float(quantizer_dropout)
    model = Codec.from_config(config)
    if weights is not None:
        # The same renames as Codec.from_pretrained: directories saved under a part's older layout still load.
        renames = [(f"{role}.{old}", f"{role}.{new}") for role in ("encoder", "quantizer", "decoder")
                   for old, new in legacy_renames(config.get(role, {}))]  # fmt: skip
        model.load_weights(weights, renames)
    else:
        log.warning("voxtok: training %s from RANDOM weights", config.get("name") or "a codec config")
    return model


def _noop() -> None:
    return None


class CodecModule(pl.LightningModule):
    """Train a voxtok codec (GAN or GAN-free) with Lightning.

    Args:
        codec: preset name (``wavtokenizer-75hz``, ``dac-24khz-tiny``, ...), a ``save_pretrained`` directory to
            fine-tune (a trained or converted codec), or a ``Codec.config()`` dict.
        losses: ``{name: {"weight": w, **args}}`` by loss type (``mel``, ``stft``, ``waveform``, ``sisdr``,
            ``adversarial``, ``feature_matching``, ``quantizer``, ``ssl``, ``lm``; see docs/training.md).
            Default: 15 x multi-scale mel + the quantizer's loss.
        discriminators: ``{name: args}`` with names ``mpd``, ``mrd``, ``msstft``, ``mbd`` (None or ``{}``: no GAN).
        loss_weights: ``{name: w}`` overriding the weights in ``losses`` (``--model.loss_weights.mel 30``).
        teachers: ``{name: source}`` overriding a distillation's teacher (``--model.teachers.ssl DIR``).
        lr, betas, weight_decay: AdamW of the generator (codec + distillation projections).
        disc_lr, disc_betas: AdamW of the discriminators (default: the generator's).
        scheduler: ``constant``, ``cosine``, ``linear`` or ``exponential`` (see ``schedule.lr_multiplier``).
        warmup_steps: linear warm-up, in updates of each optimizer.
        min_lr_ratio: the schedule's floor, as a fraction of the base rate.
        gamma: the exponential schedule's decay per update (DAC: 0.999996).
        total_steps: the cosine / linear schedule's length; default ``--trainer.max_steps``, or the wall-clock
            budget (``--trainer.max_time``) when there is no step count.
        disc_start_step: generator updates before the discriminators start training.
        adversarial_start_step: generator updates before the adversarial and feature-matching losses reach the
            generator (default ``disc_start_step``; later lets fresh discriminators catch up when fine-tuning).
        grad_clip, disc_grad_clip: gradient-norm clipping (None = none; the norm is logged either way).
        balancer: EnCodec's gradient balancer over the losses that act through the audio (``{}`` for its defaults,
            or ``{total_norm, ema_decay, per_batch_item}``); None = plain weighted sum.
        quantizer_dropout: override the quantizer's ``quantizer_dropout`` (random number of codebooks per item).
        max_nonfinite: stop after this many skipped (non-finite) updates in a row.
        val_perceptual_utterances: validation utterances per device scored with STOI and PESQ (0 = none).
    """

    def __init__(
        self,
        codec: str | dict[str, Any],
        losses: dict[str, dict[str, Any]] | None = None,
        discriminators: dict[str, dict[str, Any]] | None = None,
        loss_weights: dict[str, float] | None = None,
        teachers: dict[str, str] | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.8, 0.99),
        weight_decay: float = 0.0,
        disc_lr: float | None = None,
        disc_betas: tuple[float, float] | None = None,
        scheduler: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        gamma: float = 0.999996,
        total_steps: int | None = None,
        disc_start_step: int = 0,
        adversarial_start_step: int | None = None,
        grad_clip: float | None = None,
        disc_grad_clip: float | None = None,
        balancer: dict[str, Any] | None = None,
        quantizer_dropout: float | None = None,
        max_nonfinite: int = 10,
        val_perceptual_utterances: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if max_nonfinite < 1:
            raise ValueError(f"max_nonfinite must be >= 1; got {max_nonfinite}")
        lr_multiplier(scheduler, warmup_steps, 1 << 62, min_lr_ratio, gamma)  # checks the schedule's settings early
        self.codec = build_codec(codec, quantizer_dropout)
        self.discriminators, self.disc_weights, self.disc_kinds = build_discriminators(discriminators)
        self.objective = Objective(losses or DEFAULT_LOSSES, int(self.codec.quantizer.dim), self.codec.sample_rate,
                                   len(self.discriminators), loss_weights, teachers)
        adv = next(iter(self.objective.gan_args.values()), {"kind": "hinge", "reduction": "sum"})
        self.disc_kind, self.disc_reduction = adv["kind"], adv["reduction"]
        self.balancer = None
        if balancer is not None:
            names = self.objective.output_names()
            if not names:
                raise ValueError("balancer needs losses that act through the audio (mel, stft, adversarial, ...)")
            self.balancer = GradientBalancer({n: self.objective.weights[n] for n in names}, **balancer)
        self.adversarial_start_step = disc_start_step if adversarial_start_step is None else adversarial_start_step
        # Counters kept in checkpoints.
        self.skipped_updates = 0
        self.data_skipped = 0
        self._streak = 0
        self._last_bad = ""
        self._warned_paths: set[str] = set()
        self._grad_norms: dict[str, Tensor] = {}
        self._update_ok = True
        self.last_batch: tuple[Tensor, Tensor, Tensor] | None = None
        self.val_examples: tuple[Tensor, Tensor, Tensor] | None = None
        # Lightning keeps each submodule's mode as built; parts that pin frozen models to eval mode do so in train().
        self.train()

    # -------------------------------------------------------------------------------------------------------
    # optimizers and set-up

    def _time_progress(self) -> float:
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None:
            return 0.0
        elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train") or 0.0
        return elapsed / max(elapsed + remaining, 1e-9)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        total = hp.total_steps or (self.trainer.max_steps if self.trainer.max_steps > 0 else None)
        timed = total is None and any(isinstance(c, Timer) for c in self.trainer.callbacks)
        progress = self._time_progress if timed else None
        g_params = [p for m in (self.codec, self.objective) for p in m.parameters() if p.requires_grad]
        opt_g = _adamw(g_params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        sch_g = torch.optim.lr_scheduler.LambdaLR(
            opt_g, lr_multiplier(hp.scheduler, hp.warmup_steps, total, hp.min_lr_ratio, hp.gamma, progress))
        if not len(self.discriminators):
            return [opt_g], [sch_g]
        opt_d = _adamw(self.discriminators.parameters(), lr=hp.disc_lr or hp.lr,
                       betas=tuple(hp.disc_betas or hp.betas), weight_decay=hp.weight_decay)
        d_total = None if total is None else max(total - hp.disc_start_step, hp.warmup_steps + 1)
        sch_d = torch.optim.lr_scheduler.LambdaLR(
            opt_d, lr_multiplier(hp.scheduler, hp.warmup_steps, d_total, hp.min_lr_ratio, hp.gamma, progress))
        return [opt_g, opt_d], [sch_g, sch_d]

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        ddp_kwargs = getattr(strategy, "_ddp_kwargs", None)
        if len(self.discriminators) and ddp_kwargs is not None and self.trainer.world_size > 1 \
                and not ddp_kwargs.get("find_unused_parameters", False):
            raise ValueError("with discriminators each step runs two backward passes over different parameters: use "
                             "--trainer.strategy ddp_find_unused_parameters_true")

    # -------------------------------------------------------------------------------------------------------
    # small helpers

    def _agree(self, ok: bool) -> bool:
        """A decision taken on every rank at once: True only if ``ok`` on all of them."""
        if self.trainer.world_size > 1:
            return bool(self.trainer.strategy.reduce_boolean_decision(ok, all=True))
        return ok

    @property
    def _scaler(self) -> Any:
        return getattr(self.trainer.precision_plugin, "scaler", None)

    def _log_now(self) -> bool:
        return bool(getattr(getattr(self.trainer, "_logger_connector", None), "should_update_logs", True))

    def _skip(self, where: str, detail: str) -> None:
        self.skipped_updates += 1
        self._streak += 1
        self._last_bad = f"{where}: {detail}"
        rank_zero_warn(f"step {self.global_step}: skipped an update ({self._last_bad})")
        if self._streak >= self.hparams.max_nonfinite:
            raise RuntimeError(
                f"training stopped at step {self.global_step}: {self._streak} non-finite updates in a row "
                f"(max_nonfinite={self.hparams.max_nonfinite}); the last: {self._last_bad}"
            )

    def _note_skipped_files(self, paths: list[str]) -> None:
        self.data_skipped += len(paths)
        for p in paths:
            if p not in self._warned_paths:
                self._warned_paths.add(p)
                rank_zero_warn(f"skipped an audio file that failed to decode: {p}")

    # -------------------------------------------------------------------------------------------------------
    # training

    def _encode_quantize_decode(self, x: Tensor, lengths: Tensor | None) -> CodecOutput | None:
        """``Codec.forward`` with a finiteness check between the encoder and the quantizer (None: skip)."""
        codec = self.codec
        latents = codec.encoder(x)
        if not self._agree(bool(torch.isfinite(latents.detach().float().sum()))):
            self._skip("encoder output", "non-finite latents")
            return None
        mask = None
        if lengths is not None:
            mask = A.lengths_to_mask(codec.encoded_length(lengths), latents.shape[-1])
        q = codec.quantizer(latents, mask=mask)
        y = codec.decoder(q.z_q)[..., : x.shape[-1]]
        return CodecOutput(audio=y, quantizer=q, latents=latents, mask=mask)

    def _skip_generator(self, opt_g: Any, sch_g: Any) -> None:
        # No gradient at all: AdamW leaves weights and state alone, and the step still counts.
        opt_g.zero_grad(set_to_none=True)
        opt_g.step()
        sch_g.step()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opts, scheds = self.optimizers(), self.lr_schedulers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = scheds if isinstance(scheds, list) else [scheds]
        opt_g, sch_g = opts[0], scheds[0]
        x, lengths = batch["audio"], batch["lengths"]
        if batch.get("skipped"):
            self._note_skipped_files(batch["skipped"])
        padded = lengths if bool((lengths < x.shape[-1]).any()) else None
        if not self._agree(bool(torch.isfinite(x).all())):
            self._skip("input batch", "non-finite audio")
            return self._skip_generator(opt_g, sch_g)
        out = self._encode_quantize_decode(x, padded)
        if out is None:
            return self._skip_generator(opt_g, sch_g)
        step, logs = self.global_step, {}
        d_on = len(self.discriminators) > 0 and step >= self.hparams.disc_start_step
        if d_on:
            logs.update(self._discriminator_step(x, out.audio, opts[1], scheds[1]))
        adv_on = len(self.discriminators) > 0 and step >= self.adversarial_start_step
        logs.update(self._generator_step(x, padded, out, batch, adv_on, opt_g, sch_g))
        self.last_batch = (x, out.audio.detach(), lengths)
        self.log("train/g_loss", logs.get("train/g_loss", math.nan), prog_bar=True, batch_size=x.shape[0])
        if self._log_now():
            logs.update(codebook_scalars("train/codebook", out.quantizer.metrics))
            logs["train/codebook/bitrate_kbps"] = self.codec.bitrate / 1000
            logs["train/skipped_updates"] = float(self.skipped_updates)
            logs["train/data_skipped"] = float(self.data_skipped)
            for i, sch in enumerate(scheds):
                logs[f"train/lr/{'g' if i == 0 else 'd'}"] = sch.get_last_lr()[0]
            logs.update({f"train/grad_norm/{k}": v for k, v in self._grad_norms.items()})
            logs.pop("train/g_loss", None)
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return None

    def _discriminator_step(self, x: Tensor, y: Tensor, opt_d: Any, sch_d: Any) -> dict[str, Tensor]:
        terms = Objective.discriminator(self.discriminators, self.disc_weights, self.disc_kinds, self.disc_kind,
                                        self.disc_reduction, x, y)
        loss = torch.stack(list(terms.values())).sum()
        if not self._agree(bool(torch.isfinite(loss.detach()))) and self._scaler is None:
            bad = next(n for n, t in terms.items() if not torch.isfinite(t.detach()))
            self._skip("discriminator loss", f"discriminator {bad!r} loss is {float(terms[bad])}")
            return {}
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        # The strategy's step (precision plugin, hooks) without the LightningOptimizer wrapper, which would count
        # it in global_step: a step is a generator update.
        self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=_noop, model=self)
        sch_d.step()
        out = {f"train/d_loss/{n}": t.detach() for n, t in terms.items()}
        out["train/d_loss"] = loss.detach()
        return out

    def _generator_step(self, x: Tensor, lengths: Tensor | None, out: CodecOutput, batch: dict[str, Any],
                        adv_on: bool, opt_g: Any, sch_g: Any) -> dict[str, Tensor]:  # fmt: skip
        obj, y = self.objective, out.audio
        y_in = y.detach().requires_grad_(True) if self.balancer is not None else y
        terms = obj.reconstruction(y_in, x, lengths)
        if adv_on and obj.uses_gan:
            self.discriminators.requires_grad_(False)  # the generator's loss trains the generator only
            try:
                terms.update(obj.gan(self.discriminators, self.disc_weights, self.disc_kinds, y_in, x))
            finally:
                self.discriminators.requires_grad_(True)
        terms.update({n: out.quantizer.loss for n, k in obj.kinds.items() if k == "quantizer"})
        terms.update(obj.distillation(self.codec, out, batch))
        if not terms:  # only GAN losses, not started yet: nothing for the generator to learn from
            self._skip_generator(opt_g, sch_g)
            return {}
        values = {n: t.detach().float() for n, t in terms.items()}
        total = sum(obj.weights[n] * v for n, v in values.items())
        logs = {f"train/loss/{n}": v for n, v in values.items()}
        logs["train/g_loss"] = total
        if not self._agree(bool(torch.isfinite(torch.stack(list(values.values()))).all())) and self._scaler is None:
            bad = next(n for n, v in values.items() if not torch.isfinite(v))
            self._skip("generator loss", f"term {bad!r} is {float(values[bad])}")
            self._skip_generator(opt_g, sch_g)
            return logs
        if self.balancer is not None:
            balanced = set(obj.output_names())
            outside = [n for n in terms if n not in balanced]
            stats = self.balancer.backward({n: terms[n] for n in terms if n in balanced}, y_in)
            logs.update({f"train/balancer/{k}": v for k, v in stats.items()})
            loss = (y * y_in.grad).sum() + sum((obj.weights[n] * terms[n] for n in outside), y.new_zeros(()))
        else:
            loss = sum((obj.weights[n] * t for n, t in terms.items()), y.new_zeros(()))
        opt_g.zero_grad(set_to_none=True)
        self._update_ok = True
        self.manual_backward(loss)
        opt_g.step()
        sch_g.step()
        if self._update_ok:
            self._streak = 0
        return logs

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients are unscaled here (mixed precision) and reduced across ranks, so every rank decides alike.
        is_g = optimizer is self.optimizers()[0].optimizer if len(self.discriminators) else True
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.nn.utils.get_total_norm(grads)
        self._grad_norms["g" if is_g else "d"] = norm.detach()
        if not bool(torch.isfinite(norm)):
            if self._scaler is not None:
                return  # an fp16 overflow: the scaler skips this step and lowers its scale
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self._update_ok = False
            self._skip("generator gradients" if is_g else "discriminator gradients", f"gradient norm is {float(norm)}")
            return
        clip = self.hparams.grad_clip if is_g else self.hparams.disc_grad_clip
        if clip:
            torch.nn.utils.clip_grads_with_norm_(
                [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None], clip, norm)

    # -------------------------------------------------------------------------------------------------------
    # validation

    def on_validation_epoch_start(self) -> None:
        self._hist = CodeHistogram(self.codec.codebook_sizes, self.device)
        self._perceptual: dict[str, list[float]] = {"stoi": [], "pesq_wb": []}
        self._perceptual_failed = 0
        self.val_examples = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x, lengths = batch["audio"], batch["lengths"]
        b = x.shape[0]
        out = self.codec(x, lengths)
        y = out.audio * A.lengths_to_mask(lengths, x.shape[-1])[:, None].to(out.audio.dtype)
        sr = self.codec.sample_rate
        scores = {
            "val/mel_distance": M.mel_distance(x, y, sr, lengths),
            "val/stft_distance": M.stft_distance(x, y, lengths),
            "val/si_sdr": M.si_sdr(x, y, lengths),
        }
        for name, v in scores.items():
            self.log(name, v.mean(), batch_size=b, on_epoch=True, sync_dist=True, prog_bar=name == "val/mel_distance")
        self._hist.add(out.quantizer.codes, out.mask)
        if batch_idx == 0:
            k = min(b, 4)
            self.val_examples = (x[:k].detach(), y[:k].detach(), lengths[:k])
        for i in range(b):
            if len(self._perceptual["stoi"]) + self._perceptual_failed >= self.hparams.val_perceptual_utterances:
                break
            ref, est = x[i, 0, : int(lengths[i])], y[i, 0, : int(lengths[i])]
            try:
                self._perceptual["stoi"].append(M.stoi(ref, est, sr))
                self._perceptual["pesq_wb"].append(M.pesq(ref, est, sr, "wb"))
            except Exception as e:  # PESQ refuses some inputs (no speech, too short): record, never invent a score
                self._perceptual_failed += 1
                log.info("perceptual metrics failed on a validation utterance: %s", e)

    def on_validation_epoch_end(self) -> None:
        counts = self._hist.counts
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
            self._hist.counts = counts
        scalars = codebook_scalars("val/codebook", self._hist.stats())
        self.log_dict(scalars, on_epoch=True, sync_dist=False, batch_size=1)
        for name, values in self._perceptual.items():
            if values:
                self.log(f"val/{name}", sum(values) / len(values), on_epoch=True, sync_dist=True, batch_size=1)
        if self._perceptual_failed:
            self.log("val/perceptual_failed", float(self._perceptual_failed), on_epoch=True, batch_size=1,
                     reduce_fx="sum", sync_dist=True)

    # -------------------------------------------------------------------------------------------------------
    # checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = torch.get_rng_state()
        states = [rng]
        if self.trainer.world_size > 1:  # every rank's generator, so a resumed DDP run draws what it would have
            states = list(self.trainer.strategy.all_gather(rng.to(self.device)).cpu().unbind(0))
        checkpoint["voxtok"] = {
            "codec_config": self.codec.config(),
            "rng": states,
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "skipped_updates": self.skipped_updates,
            "data_skipped": self.data_skipped,
            "streak": self._streak,
            "balancer": None if self.balancer is None else {"sum": dict(self.balancer._ema_sum),
                                                             "count": dict(self.balancer._ema_count)},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("voxtok")
        if state is None:
            rank_zero_warn("checkpoint has no voxtok training state (RNG, counters); resuming without it")
            return
        self.skipped_updates = int(state.get("skipped_updates", 0))
        self.data_skipped = int(state.get("data_skipped", 0))
        self._streak = int(state.get("streak", 0))
        if self.balancer is not None and state.get("balancer"):
            self.balancer._ema_sum = dict(state["balancer"]["sum"])
            self.balancer._ema_count = dict(state["balancer"]["count"])
        states = state.get("rng") or []
        rank = self.trainer.global_rank if self._trainer is not None else 0
        if states:
            torch.set_rng_state(states[rank] if rank < len(states) else states[0])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
