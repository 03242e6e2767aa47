"""``voxtok demo``: train the demo codec from scratch, export it, tokenize the corpus and evaluate it on unseen speech.

Every stage is one of voxtok's own commands, run in this process through the functions the command line calls:
``voxtok fit`` on the demo recipe (``voxtok/demo/recipe.yaml``, also ``recipes/demo.yaml``), ``voxtok export``,
``voxtok extract`` and ``voxtok.eval.evaluate`` (what ``voxtok eval`` runs). Under ``--out`` (default ``out/demo``):

| path | what |
|---|---|
| ``corpus/`` | training (espeak-ng voices + LJSpeech clips), validation and evaluation audio (``build_corpus``) |
| ``train/`` | the ``voxtok fit`` run: TensorBoard logs, ``checkpoints/last.ckpt``, ``config.yaml`` |
| ``model/`` | the trained codec (``voxtok.load("out/demo/model")``, ``voxtok encode out/demo/model x.wav t.npz``) |
| ``tokens/`` | the corpus's tokens (Parquet shards, ``voxtok.tokenizers.read_tokens``) |
| ``eval/`` | ``report.md``, ``results.json``, ``plots/*.png``, ``audio/`` (reconstructions), ``demo.json`` |

A second run reuses the trained model (``retrain=True`` trains again); a run killed while training resumes from
its last checkpoint with the budget it had left.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voxtok.demo.corpus import TRAIN_SPEAKERS, UTTERANCES_PER_SPEAKER, DemoCorpus, build_corpus

__all__ = ["PRESET", "RECIPE", "DemoResult", "demo_table", "run_demo"]

RECIPE = Path(__file__).resolve().parent / "recipe.yaml"
PRESET = "stft-fsq-50hz"
CORPUS_SIZE: tuple[int, int] = (TRAIN_SPEAKERS, UTTERANCES_PER_SPEAKER)  # synthetic speakers, utterances each
METRICS = ("stoi", "pesq_wb", "mel_distance", "si_sdr")
_RUN_FILE = "demo-run.json"  # beside the checkpoints: the settings a resumed run must match


@dataclass
class DemoResult:
    """What ``run_demo`` did: the table's values per system (``"untrained"``, ``"trained"``), the training record
    and where things were written."""

    rows: dict[str, dict[str, float | None]]
    training: dict[str, Any]
    paths: dict[str, Path]
    seconds: float


def _log(msg: str) -> None:
    print(msg, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def _budget(minutes: float) -> str:
    """``--trainer.max_time`` as Lightning reads it (DD:HH:MM:SS, whole seconds)."""
    total = max(1, round(minutes * 60))
    h, rest = divmod(total, 3600)
    return f"00:{h:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _fit(corpus: DemoCorpus, train_dir: Path, minutes: float, preset: str, extra: list[str]) -> dict[str, Any]:
    """``voxtok fit`` on the demo recipe for ``minutes`` of wall time; resumes a killed run with the same settings."""
    from voxtok.training.lightning_cli import run

    # The corpus is always OUT/corpus, so the settings leave its path out: a copied or moved OUT still resumes.
    settings = {"minutes": minutes, "preset": preset, "recipe": RECIPE.read_text(), "extra": extra}
    run_file, last = train_dir / _RUN_FILE, train_dir / "checkpoints" / "last.ckpt"
    resume = last.is_file() and run_file.is_file() and json.loads(run_file.read_text()) == settings
    if not resume:
        shutil.rmtree(train_dir, ignore_errors=True)
        train_dir.mkdir(parents=True)
        run_file.write_text(json.dumps(settings, indent=1) + "\n")
    args = ["--config", str(RECIPE), "--model.codec", preset, "--trainer.max_time", _budget(minutes),
            "--trainer.default_root_dir", str(train_dir), "--data.init_args.train", str(corpus.train_dir),
            "--data.init_args.val", str(corpus.validation_dir), *extra]  # fmt: skip
    if resume:
        _log(f"resuming the interrupted training run from {last} (the budget counts the time it already had)")
        args += ["--ckpt_path", str(last)]
    start = time.perf_counter()
    try:
        trainer = run(args).trainer  # what `voxtok fit` runs
        steps = int(trainer.global_step)
    except ValueError as e:  # a bad recipe or path, as `voxtok fit` reports it
        raise RuntimeError(f"voxtok fit: {e}") from e
    seconds = time.perf_counter() - start
    if not last.is_file():
        raise RuntimeError(f"voxtok fit wrote no checkpoint; its log is above, its run in {train_dir}")
    return {"preset": preset, "minutes": minutes, "steps": steps,
            "wall_seconds": round(seconds, 1), "checkpoint": str(last), "threads": torch.get_num_threads(),
            "precision": str(trainer.precision)}


def _export(train_dir: Path, model_dir: Path) -> None:
    from voxtok.training.cli import export_checkpoint

    shutil.rmtree(model_dir, ignore_errors=True)
    try:
        export_checkpoint(train_dir / "checkpoints" / "last.ckpt", model_dir)
    except ValueError as e:
        raise RuntimeError(f"voxtok export: {e}") from e


def _extract(model_dir: Path, corpus: DemoCorpus, tokens_dir: Path, progress: bool) -> dict[str, Any]:
    from voxtok.tokenizers.extraction import extract

    try:  # what `voxtok extract MODEL --input TRAIN --output TOKENS --num-workers 0` runs
        result = extract(model_dir, corpus.train_dir, tokens_dir, num_workers=0, progress=progress)
    except ValueError as e:
        raise RuntimeError(f"voxtok extract: {e}") from e
    print(result.summary(), flush=True)
    if result.exit_status != 0:
        raise RuntimeError(f"voxtok extract exited with status {result.exit_status}; see {tokens_dir}/errors.jsonl")
    return {"utterances": result.done_before + result.extracted, "seconds": round(result.wall_seconds, 1)}


def _rtf(codec: Any, files: list[Path], repeats: int = 3) -> tuple[float, float]:
    """Encode and decode real-time factors (codec seconds per audio second, median of ``repeats`` passes over
    ``files``, one file at a time as a user calls ``encode`` / ``decode``)."""
    import voxtok.audio as A

    clips = [A.read(f) for f in files]
    audio_seconds = sum(x.shape[-1] / sr for x, sr in clips)
    enc, dec = [], []
    for _ in range(repeats):
        te = td = 0.0
        for x, sr in clips:
            t = time.perf_counter()
            tokens = codec.encode(x[None], sample_rate=sr)
            te += time.perf_counter() - t
            t = time.perf_counter()
            codec.decode(tokens)
            td += time.perf_counter() - t
        enc.append(te / audio_seconds)
        dec.append(td / audio_seconds)
    return statistics.median(enc), statistics.median(dec)


def _evaluate(model_dir: Path, preset: str, corpus: DemoCorpus, eval_dir: Path,
              progress: bool) -> dict[str, dict[str, Any]]:  # fmt: skip
    from voxtok.codecs.codec import Codec
    from voxtok.codecs.loading import build
    from voxtok.eval.baselines import VoxtokModel
    from voxtok.eval.evaluation import evaluate

    trained = Codec.from_pretrained(model_dir).eval()
    torch.manual_seed(0)  # the untrained codec: the same architecture with random weights, the same every run
    untrained = build(preset).eval()
    systems = {"trained": VoxtokModel(trained, "trained", str(model_dir)),
               "untrained": VoxtokModel(untrained, "untrained", "the same preset, random weights (seed 0)")}
    result = evaluate(systems["trained"], corpus.evaluation_dir, output=eval_dir,
                      metrics=["stoi", "pesq", "mel", "si_sdr", "codes"], baselines=[systems["untrained"]],
                      plots=len(corpus.evaluation), save_audio=True, progress=progress)
    rows: dict[str, dict[str, Any]] = {}
    for name, codec in (("untrained", untrained), ("trained", trained)):
        summary = result.summary.get(name, {})
        row: dict[str, Any] = {m: (summary.get(m) or {}).get("mean") for m in METRICS}
        codes = result.codes.get(name, {})
        row["bitrate_kbps"] = codec.bitrate / 1000
        row["codebook_usage"] = codes.get("codebook_usage")
        row["tokens_per_second"] = codec.frame_rate * codec.num_codebooks
        row["encode_rtf"], row["decode_rtf"] = _rtf(codec, corpus.evaluation)
        rows[name] = row
    return rows


_ROWS = (("STOI", "stoi", "{:.3f}"), ("PESQ-WB", "pesq_wb", "{:.2f}"), ("mel distance", "mel_distance", "{:.3f}"),
         ("SI-SDR (dB)", "si_sdr", "{:.1f}"), ("bitrate (kbps)", "bitrate_kbps", "{:.2f}"),
         ("codebook usage", "codebook_usage", "{:.1%}"), ("tokens / s", "tokens_per_second", "{:.0f}"),
         ("encode RTF", "encode_rtf", "{:.4f}"), ("decode RTF", "decode_rtf", "{:.4f}"))  # fmt: skip


def demo_table(rows: dict[str, dict[str, Any]]) -> str:
    """The demo's table: one line per measure, one column per system (``untrained``, ``trained``)."""
    names = list(rows)
    lines = [f"{'':<16}" + "".join(f"{n:>12}" for n in names)]
    for label, key, fmt in _ROWS:
        cells = [rows[n].get(key) for n in names]
        lines.append(f"{label:<16}" + "".join(f"{'—' if v is None else fmt.format(v):>12}" for v in cells))
    return "\n".join(lines)


def run_demo(
    out: str | Path = "out/demo",
    minutes: float = 10.0,
    retrain: bool = False,
    preset: str = PRESET,
    corpus_size: tuple[int, int] = CORPUS_SIZE,
    fit_args: list[str] | None = None,
    progress: bool = True,
    voices: Sequence[str] | None = None,
) -> DemoResult:
    """Run the demo (see the module docstring) and print its table.

    Args:
        out: output folder.
        minutes: training budget in wall-clock minutes (the learning-rate schedule spans it).
        retrain: train again even if ``out/model`` holds a trained codec.
        preset: the codec preset trained from scratch (the demo recipe is tuned for ``stft-fsq-50hz``).
        corpus_size: synthetic training speakers (espeak-ng and flite) and utterances per speaker.
        fit_args: more ``voxtok fit`` arguments (``["--data.init_args.batch_size", "8"]``).
        progress: progress bars for training, extraction and evaluation.
        voices: training voices of the corpus (default ``voxtok.demo.TRAIN_VOICES``).

    Raises:
        ValueError: ``minutes`` is not a positive number.
        RuntimeError: a stage failed (the message names it and where its log or errors are).
    """
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not minutes > 0 or minutes != minutes:
        raise ValueError(f"minutes must be a positive number; got {minutes!r}")
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / k for k in ("corpus", "train", "model", "tokens", "eval")}
    _log(f"voxtok demo: writing into {out}/")

    t = time.perf_counter()
    corpus = build_corpus(paths["corpus"], train_speakers=corpus_size[0], utterances_per_speaker=corpus_size[1],
                          voices=voices)
    _log(f"[1/5] corpus: {len(corpus.train)} training, {len(corpus.validation)} validation and "
         f"{len(corpus.evaluation)} evaluation recordings in {paths['corpus']}/ ({time.perf_counter() - t:.0f} s)")

    record = paths["model"] / "demo-training.json"
    trained_now = retrain or not ((paths["model"] / "config.json").is_file() and record.is_file())
    if not trained_now:
        training = json.loads(record.read_text())
        _log(f"[2/5] reusing the codec trained before in {paths['model']}/ ({training['steps']} steps in "
             f"{training['minutes']:g} min); --retrain trains again")
        _log(f"[3/5] export: {paths['model']}/ is already there")
    else:
        _log(f"[2/5] training {preset} from scratch for {minutes:g} minutes of wall time on "
             f"{torch.get_num_threads()} CPU threads (budget ends at "
             f"{time.strftime('%H:%M:%S', time.localtime(time.time() + minutes * 60))}); logs in {paths['train']}/ "
             f"(tensorboard --logdir {paths['train']})")
        training = _fit(corpus, paths["train"], minutes, preset, list(fit_args or []))
        _log(f"      {training['steps']} steps in {_clock(training['wall_seconds'])} ({training['precision']})")
        _export(paths["train"], paths["model"])
        record.write_text(json.dumps(training, indent=1) + "\n")
        shutil.rmtree(paths["tokens"], ignore_errors=True)  # tokens of an earlier model are not this model's
        _log(f"[3/5] export: voxtok.load({str(paths['model'])!r}) loads the trained codec")

    t = time.perf_counter()
    extraction = _extract(paths["model"], corpus, paths["tokens"], progress)
    _log(f"[4/5] tokens: {extraction['utterances']} utterances in {paths['tokens']}/ ({time.perf_counter() - t:.0f} s)")

    t = time.perf_counter()
    rows = _evaluate(paths["model"], training["preset"], corpus, paths["eval"], progress)
    seconds = time.perf_counter() - start
    (paths["eval"] / "demo.json").write_text(json.dumps(
        {"rows": rows, "training": training, "extraction": extraction, "total_seconds": round(seconds, 1)},
        indent=1) + "\n")  # fmt: skip
    _log(f"[5/5] evaluation on {len(corpus.evaluation)} recordings of speakers not in the training data "
         f"({time.perf_counter() - t:.0f} s)\n")
    _log(demo_table(rows))
    _log(f"\nreconstructions: {paths['eval'] / 'audio'}/\nspectrograms:    {paths['eval'] / 'plots'}/\n"
         f"report:          {paths['eval'] / 'report.md'}\nmodel:           {paths['model']}/ "
         f"(voxtok encode {paths['model']} x.wav t.npz)\ntokens:          {paths['tokens']}/\n"
         f"total time:      {_clock(seconds)} ({'training' if trained_now else 'trained earlier in'} "
         f"{_clock(training['wall_seconds'])})")
    return DemoResult(rows, training, paths, seconds)


def main(args: Any) -> int:
    """``voxtok demo`` (argparse namespace with ``out``, ``minutes``, ``retrain``)."""
    try:
        run_demo(args.out, args.minutes, args.retrain, progress=not args.no_progress)
    except (ValueError, RuntimeError) as e:
        print(f"voxtok demo: error: {e}", file=sys.stderr)
        return 1
    return 0
