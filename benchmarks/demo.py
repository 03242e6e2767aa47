"""The demo codec's design study and quality-per-minute curve (docs/demo.md).

Each variant is the demo (``voxtok.demo.run_demo``: corpus, ``voxtok fit`` on ``recipes/demo.yaml`` plus the
variant's overrides, export, extraction, evaluation) for a wall-clock budget. Settings are chosen on the
validation set (``corpus/validation``: unseen espeak-ng voices, LJSpeech clips that are not trained on, and the same
clips under pink noise); the evaluation set (unseen real speakers) is printed beside it but is for measuring only.

    python benchmarks/demo.py --variants shipped --minutes 2 5 10      # the curve of what ships
    python benchmarks/demo.py --variants shipped low-floors --minutes 5  # a comparison
    python benchmarks/demo.py --variants no-envelope envelope-8 shipped  # the fourth round's weights

Run on a quiet machine: the budget is wall time, so anything else running costs training steps.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from voxtok.demo.run import RECIPE
from voxtok.training.synth import VOICES

# The recipe's losses: an overlay's `losses` replaces the recipe's whole dict, so variants adding a term repeat them.
RECIPE_LOSSES: dict[str, Any] = yaml.safe_load(RECIPE.read_text())["model"]["losses"]

# Overrides of recipes/demo.yaml (YAML merged by LightningCLI after the recipe).
_VOCOS = dict(dim=256, intermediate_dim=768, num_layers=6, attention=False, adanorm_num_embeddings=None)


def _decoder_100hz(dimension: int = 20) -> dict[str, Any]:
    """The decoder at the STFT rate: latents upsampled 50 -> 100 Hz, Vocos with hop 160 and a 40 ms window."""
    vocos = {"class": "VocosDecoder", "args": {**_VOCOS, "dimension": dimension, "n_fft": 640, "hop_length": 160}}
    up = {"class": "FrameUpsample", "args": {"dimension": dimension, "stride": 2, "causal": False}}
    return {"class": "DecoderChain", "args": {"stages": [up, vocos]}}


def _codec_with(decoder: dict[str, Any] | None = None, levels: list[int] | None = None,
                groups: int | None = None, encoder: dict[str, Any] | None = None,
                decoder_args: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    from voxtok.codecs.presets import preset_config

    cfg = preset_config("stft-fsq-50hz")
    cfg["encoder"]["args"].update(encoder or {})
    cfg["decoder"]["args"].update(decoder_args or {})
    if decoder is not None:
        cfg["decoder"] = decoder
    if levels is not None or groups is not None:
        q = cfg["quantizer"]["args"]
        q["levels"] = levels or q["levels"]
        q["num_codebooks"] = groups or q["num_codebooks"]
        dim = len(q["levels"]) * q["num_codebooks"]
        q["dim"] = dim
        cfg["encoder"]["args"]["dimension"] = dim
        _set_dimension(cfg["decoder"], dim)
    return cfg


def _set_dimension(decoder: dict[str, Any], dim: int) -> None:
    if decoder["class"] == "DecoderChain":
        for stage in decoder["args"]["stages"]:
            if "dimension" in stage["args"]:
                stage["args"]["dimension"] = dim
                if stage["class"] != "FrameUpsample":
                    break
    else:
        decoder["args"]["dimension"] = dim


def variants() -> dict[str, dict[str, Any]]:
    """Name -> overrides of the demo recipe (``{}``: the recipe as shipped)."""
    return {
        "shipped": {},
        "decoder-100hz": {"model": {"codec": _codec_with(_decoder_100hz())}},
        # The losses' default magnitude floors (1e-7, 1e-5): espeak-ng's digital silence then asks for log(1e-7).
        "low-floors": {"model": {"losses": {
            "stft": {"weight": 1.0, "fft_sizes": [256, 512, 1024, 2048], "hop_lengths": [64, 128, 256, 512],
                     "win_lengths": [256, 512, 1024, 2048]},
            "mel": {"weight": 2.3, "window_lengths": [256, 512, 1024, 2048], "n_mels": [20, 40, 80, 128]}}}},
        # White noise at -70 ... -45 dBFS on the training crops (a noise floor where espeak-ng has digital silence).
        "noise": {"data": {"init_args": {"noise_db": [-70.0, -45.0]}}},
        "noise-strong": {"data": {"init_args": {"noise_db": [-60.0, -35.0]}}},
        # float32 throughout instead of bf16 autocast (about 1.35x the time per step on this CPU).
        "fp32": {"trainer": {"precision": "32"}},
        "real-x8": {"real_repeats": 8},
        # espeak-ng's twelve voices only (24 speakers), without flite's four (the third round's baseline).
        "espeak-only": {"corpus": {"voices": list(VOICES), "corpus_size": (24, 12)}},
        # The decoder's synthesis window (hop 320 either way): shorter windows smear a frame's energy over less time.
        "decoder-window-640": {"model": {"codec": _codec_with(decoder_args={"n_fft": 640})}},
        "decoder-window-960": {"model": {"codec": _codec_with(decoder_args={"n_fft": 960})}},
        "decoder-wide": {"model": {"codec": _codec_with(decoder_args={"dim": 384, "intermediate_dim": 1152})}},
        "decoder-deep": {"model": {"codec": _codec_with(decoder_args={"num_layers": 9})}},
        # Batches of 8 one-second crops (about 1.8x the steps) / of 32 half-second crops (the same samples per step).
        "batch-8": {"data": {"init_args": {"batch_size": 8}}},
        "crops-32x0.5s": {"data": {"init_args": {"batch_size": 32, "segment_seconds": 0.5}}},
        "no-gain-aug": {"data": {"init_args": {"gain_db": None}}},
        # The encoder's magnitude floor at 1e-5 (shipped: 1e-2, where silence and a noise floor look alike).
        "encoder-floor-1e-5": {"model": {"codec": _codec_with(encoder={"log_floor": 1.0e-5})}},
        "lr-4e-3": {"model": {"lr": 4.0e-3}},
        "fsq-2kbps": {"model": {"codec": _codec_with(levels=[8, 5, 5, 5])}},
        # The envelope-correlation term (STOI's band envelopes, on the shared 512-point spectra): without it (the
        # recipe before the fourth round), and at other weights (shipped: 20).
        "no-envelope": {"model": {"losses": {k: v for k, v in RECIPE_LOSSES.items() if k != "envelope"}}},
        **{f"envelope-{w}": {"model": {"losses": {**RECIPE_LOSSES, "envelope": {"weight": float(w)}}}}
           for w in (1, 3, 8, 20)},
    }


def _validation_scores(model_dir: Path, validation: Path) -> dict[str, float]:
    from voxtok.eval.evaluation import evaluate

    result = evaluate(str(model_dir), validation, metrics=["stoi", "pesq", "mel"], plots=0, progress=False)
    name = result.systems[0]["name"]
    scores = {m: result.summary[name][m]["mean"] for m in ("stoi", "pesq_wb", "mel_distance")}
    # The real recordings (LJSpeech, clean and under a noise floor) and the synthetic voices apart: they answer
    # different questions.
    groups = {"stoi_ljspeech": lambda i: "LJ" in i and "snr" not in i, "stoi_noisy": lambda i: "snr" in i,
              "stoi_espeak": lambda i: "LJ" not in i}  # fmt: skip
    for key, member in groups.items():
        values = [it["systems"][name]["values"].get("stoi") for it in result.items if member(it["id"])]
        values = [v for v in values if v is not None]
        scores[key] = sum(values) / len(values) if values else float("nan")
    return scores


def run(name: str, minutes: float, root: Path) -> dict[str, Any]:
    from voxtok.demo.run import run_demo

    overrides = dict(variants()[name])
    corpus = overrides.pop("corpus", {})  # run_demo's corpus arguments; the rest overlays the recipe
    repeats = overrides.pop("real_repeats", 1)
    overlay = root / f"{name}.yaml"
    overlay.write_text(yaml.safe_dump(overrides))
    out = root / f"{name}-{minutes:g}min"
    if repeats > 1:
        # The real training clips k times over, in a corpus built with run_demo's own arguments so that run_demo
        # reuses it (the copies are not in corpus.json, which only lists what must exist).
        from voxtok.demo.corpus import build_corpus
        from voxtok.demo.run import CORPUS_SIZE

        speakers, per_speaker = corpus.get("corpus_size", CORPUS_SIZE)
        built = build_corpus(out / "corpus", speakers, per_speaker, voices=corpus.get("voices"))
        for k in range(1, repeats):
            shutil.copytree(built.train_dir / "real", built.train_dir / f"real-{k}", dirs_exist_ok=True)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        result = run_demo(out, minutes, retrain=True, fit_args=["--config", str(overlay)] if overrides else [],
                          progress=False, **corpus)
    val = _validation_scores(result.paths["model"], result.paths["corpus"] / "validation")
    trained = result.rows["trained"]
    return {"variant": name, "minutes": minutes, "steps": result.training["steps"],
            "bitrate": trained["bitrate_kbps"], "val": val,
            "eval": {k: trained[k] for k in ("stoi", "pesq_wb", "mel_distance")}, "seconds": result.seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["shipped"], choices=list(variants()))
    p.add_argument("--minutes", nargs="+", type=float, default=[10.0])
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            for name in args.variants:
                t = time.perf_counter()
                rows.append(run(name, minutes, root))
                print(f"{name} {minutes:g} min: done in {time.perf_counter() - t:.0f} s", flush=True)
    print("\n| variant | budget (min) | steps | kbps | val STOI | val STOI LJSpeech | val STOI LJSpeech + noise "
          "| val STOI espeak-ng | val PESQ-WB | val mel | eval STOI | eval PESQ-WB | eval mel |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        v, e = r["val"], r["eval"]
        print(f"| {r['variant']} | {r['minutes']:g} | {r['steps']} | {r['bitrate']:.2f} | {v['stoi']:.3f} | "
              f"{v['stoi_ljspeech']:.3f} | {v['stoi_noisy']:.3f} | {v['stoi_espeak']:.3f} | "
              f"{v['pesq_wb']:.2f} | {v['mel_distance']:.3f} | {e['stoi']:.3f} | {e['pesq_wb']:.2f} | "
              f"{e['mel_distance']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
