"""What an evaluation measured (``EvalResult``) and its report: ``report.md``, ``results.json`` and PNG plots
(matplotlib, in the ``eval`` extra).

``report.md`` holds the summary table (one row per metric, one column per system, the ground-truth row first;
mean +- 95% confidence interval over utterances, failures counted in the cell), every metric's settings, the code
statistics (bitrates, per-codebook usage and perplexity), per-utterance tables, failures, inputs skipped, metrics
not available with how to enable them, and the time per utterance. WER and CER are printed in percent
(``results.json`` keeps fractions).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxtok.eval.backends import ASR, DNSMOS, SpeakerSimilarity

METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "pesq": ("pesq_wb", "pesq_nb"),
    "stoi": ("stoi", "estoi"),
    "si_sdr": ("si_sdr",),
    "mel": ("mel_distance",),
    "stft": ("stft_distance",),
    "dnsmos": DNSMOS.metrics,
    "wer": ASR.metrics,
    "speaker": SpeakerSimilarity.metrics,
    "codes": ("bitrate_nominal", "bitrate_entropy", "codebook_usage", "codebook_perplexity"),
}
LOWER_IS_BETTER = {"mel_distance", "stft_distance", "wer", "cer"}
REFERENCE = "reference"  # the ground-truth row's name


@dataclass
class EvalResult:
    """What ``evaluate`` measured (``to_dict()`` is ``results.json``; ``table()`` the summary as markdown).

    Attributes:
        systems: per system (the model first, then the baselines): name, sample and frame rate, codebooks,
            nominal bitrate and ``info`` (kind, source, hash, ...).
        metrics: the metrics computed, in report order.
        summary: ``{system: {metric: {"mean", "ci95", "n", "failed"}}}``, the ground-truth row under
            ``"reference"``; WER / CER also carry ``"corpus"`` (errors over all words / characters).
        codes: ``{system: metrics.code_statistics(...)}`` for systems with codes.
        items: per utterance: id, path, seconds, text, and per system (and ``"reference"``) ``values``,
            ``errors`` and, for systems, ``seconds`` (encode + decode), ``aligned`` (samples trimmed (+) or
            padded (-)), ``clipped`` samples, and transcripts when WER ran.
        failures: ``{"system", "item", "metric", "error"}`` for every failed score.
        bad_inputs: inputs skipped, with the reason.
        unavailable: ``{metric group: "not available: ..."}``.
        settings: ``{metric: what it computes, with which models, files and versions}`` plus ``"evaluation"``.
        timing: wall time, audio seconds, and per system the codec and metric seconds per utterance.
        sample_rate: the evaluation rate every score was computed at.
        examples: the first utterances' audio at the evaluation rate, per system (for plots; not in JSON).
    """

    systems: list[dict[str, Any]]
    metrics: list[str]
    summary: dict[str, dict[str, dict[str, Any]]]
    codes: dict[str, dict[str, Any]]
    items: list[dict[str, Any]]
    failures: list[dict[str, str]]
    bad_inputs: list[dict[str, str]]
    unavailable: dict[str, str]
    settings: dict[str, str]
    timing: dict[str, Any]
    sample_rate: int = 16000
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready results (everything but the example audio kept for plots)."""
        from voxtok._version import __version__

        return {"voxtok_version": __version__, "results_version": 1, "sample_rate": self.sample_rate,
                "systems": self.systems, "metrics": self.metrics, "summary": self.summary, "codes": self.codes,
                "items": self.items, "failures": self.failures, "bad_inputs": self.bad_inputs,
                "unavailable": self.unavailable, "settings": self.settings, "timing": self.timing}

    def table(self) -> str:
        """The summary table (markdown): one row per metric, one column per system, mean +- 95% CI."""
        return summary_table(self)

    def write(self, output: str | Path, plots: int = 3) -> Path:
        """Write ``report.md``, ``results.json`` and ``plots/*.png`` into ``output``."""
        return write_report(self, output, plots=plots)


LABELS = {
    "pesq_wb": "PESQ wb", "pesq_nb": "PESQ nb", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)",
    "mel_distance": "mel distance", "stft_distance": "STFT distance", "dnsmos_ovrl": "DNSMOS OVRL",
    "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK", "dnsmos_p808": "DNSMOS P.808", "wer": "WER (%)",
    "cer": "CER (%)", "speaker_sim": "speaker similarity", "bitrate_nominal": "bitrate, nominal (kbps)",
    "bitrate_entropy": "bitrate, code entropy (kbps)", "codebook_usage": "codebook usage",
    "codebook_perplexity": "codebook perplexity",
}
DIGITS = {"pesq_wb": 3, "pesq_nb": 3, "stoi": 3, "estoi": 3, "si_sdr": 2, "mel_distance": 3, "stft_distance": 3,
          "speaker_sim": 3, "wer": 1, "cer": 1, "bitrate_nominal": 3, "bitrate_entropy": 3, "codebook_usage": 4,
          "codebook_perplexity": 1, "dnsmos_ovrl": 3, "dnsmos_sig": 3, "dnsmos_bak": 3, "dnsmos_p808": 3}
PERCENT = {"wer", "cer"}
# The metrics plotted per utterance, when they ran.
MAIN = ("pesq_wb", "stoi", "si_sdr", "mel_distance", "dnsmos_ovrl", "wer", "speaker_sim")


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    if metric in PERCENT:
        v = 100 * v
    return f"{v:.{DIGITS.get(metric, 2)}f}"


def _better(metric: str) -> str:

    if metric in ("bitrate_nominal", "bitrate_entropy", "codebook_usage", "codebook_perplexity"):
        return ""
    return "↓" if metric in LOWER_IS_BETTER else "↑"


def _cell(metric: str, stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "—"
    if stat["mean"] is None:
        return f"failed ({stat['failed']})"
    text = _fmt(metric, stat["mean"])
    if stat["ci95"] is not None:
        text += f" ± {_fmt(metric, stat['ci95'])}"
    if stat["failed"]:
        text += f" ({stat['failed']} failed)"
    return text


def _group_of(metric: str) -> str:

    return next(g for g, ms in METRIC_GROUPS.items() if metric in ms)


def summary_table(result: EvalResult) -> str:
    """Markdown: one row per metric, columns ``reference`` then each system; mean ± 95% CI (n failed)."""

    names = [REFERENCE, *(s["name"] for s in result.systems)]
    lines = ["| metric | | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for metric in result.metrics:
        group = _group_of(metric)
        if group in result.unavailable:
            cells = ["not available"] * len(names)
        elif group == "codes":
            cells = ["—"] + [_fmt(metric, result.codes[n][metric]) if n in result.codes else "—" for n in names[1:]]
        else:
            cells = [_cell(metric, result.summary.get(n, {}).get(metric)) for n in names]
        lines.append(f"| {LABELS.get(metric, metric)} | {_better(metric)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "system"


def _markdown(result: EvalResult, plot_files: list[str]) -> str:

    t = result.timing
    out = ["# voxtok eval report", ""]
    out.append(f"{t.get('utterances', 0)} utterances ({t.get('audio_seconds', 0):.1f} s of audio), "
               f"{len(result.bad_inputs)} inputs skipped, {len(result.failures)} failed scores.")
    out.append("")
    out += ["## Systems", "", "| system | kind | source | rate (Hz) | frame rate (Hz) | codebooks | nominal kbps | "
            "hash |", "|---|---|---|---|---|---|---|---|"]
    for s in result.systems:
        frame = "—" if s["frame_rate"] is None else f"{s['frame_rate']:g}"
        q = len(s["codebook_sizes"])
        books = "—" if not q else (f"{q} x {s['codebook_sizes'][0]}" if len(set(s["codebook_sizes"])) == 1
                                   else ", ".join(map(str, s["codebook_sizes"])))
        kbps = "—" if s["bitrate"] is None else f"{s['bitrate'] / 1000:.3f}"
        kind = s.get("kind", "") + (" (random weights)" if s.get("random_weights") else "")
        out.append(f"| {s['name']} | {kind} | {s.get('source', '')} | {s['sample_rate']} | {frame} | {books} | "
                   f"{kbps} | `{str(s.get('hash', ''))[:23]}` |")
    out += ["", "## Summary", "", "Mean ± 95% confidence interval over utterances; ↑ higher is better, ↓ lower. "
            f"The `{REFERENCE}` column scores the reference audio itself where a metric allows it (no-reference "
            "metrics, WER against a given transcript).", "", summary_table(result), ""]
    wer = {n: s["wer"].get("corpus") for n, s in result.summary.items() if "wer" in s}
    if any(v is not None for v in wer.values()):
        out.append("WER over all words (errors / reference words, as papers report it): "
                   + ", ".join(f"{n} {_fmt('wer', v)}%" for n, v in wer.items() if v is not None) + ".")
        out.append("")
    out += ["## Settings", ""]
    for metric in result.metrics:
        out.append(f"- **{LABELS.get(metric, metric)}** (`{metric}`): {result.settings.get(metric, '')}")
    out.append(f"- **evaluation**: {result.settings.get('evaluation', '')}")
    out.append("")
    if result.unavailable:
        out += ["## Not available", ""] + [f"- `{g}`: {why}" for g, why in result.unavailable.items()] + [""]
    if result.codes:
        out += ["## Codes", ""]
        for name, c in result.codes.items():
            out += [f"### {name}", "", f"{c['frames']} frames; nominal {c['bitrate_nominal']:.3f} kbps, code entropy "
                    f"{c['bitrate_entropy']:.3f} kbps.", "", "| codebook | size | used | usage | perplexity | "
                    "entropy (bits) |", "|---|---|---|---|---|---|"]
            for q, b in enumerate(c["per_codebook"]):
                out.append(f"| {q} | {b['size']} | {b['used']} | {b['usage']:.4f} | {b['perplexity']:.1f} | "
                           f"{b['entropy_bits']:.3f} |")
            out.append("")
    out += ["## Time", "", f"Wall time {t.get('wall_seconds', 0):.1f} s for {t.get('utterances', 0)} utterances "
            f"(device {t.get('device')}, {t.get('torch_threads')} torch threads).", "",
            "| system | codec s / utterance | real-time factor | metrics s / utterance |", "|---|---|---|---|"]
    for name, s in t.get("systems", {}).items():
        rtf = "—" if s["real_time_factor"] is None else f"{s['real_time_factor']:.3f}"
        out.append(f"| {name} | {s['codec_seconds_per_utterance']:.3f} | {rtf} | "
                   f"{s['metric_seconds_per_utterance']:.3f} |")
    groups = t.get("metric_groups", {})
    if groups:
        out += ["", "Metric time by group, seconds per utterance and system (`reference`: the ground-truth work done "
                "once per utterance: its DNSMOS, transcript and speaker embedding):", "",
                "| " + " | ".join(groups) + " |", "|" + "---|" * len(groups),
                "| " + " | ".join(f"{v:.3f}" for v in groups.values()) + " |"]
    out += ["", "## Per utterance", ""]
    per_item = [m for m in result.metrics if _group_of(m) not in ("codes", *result.unavailable)]
    for name in [REFERENCE, *(s["name"] for s in result.systems)]:
        cols = [m for m in per_item if name != REFERENCE or m in result.summary.get(REFERENCE, {})]
        if not cols:
            continue
        extra = [] if name == REFERENCE else ["aligned", "clipped", "codec s"]
        out += [f"### {name}", "", "| item | s | " + " | ".join(LABELS.get(m, m) for m in cols)
                + "".join(f" | {e}" for e in extra) + " |", "|---|---|" + "---|" * (len(cols) + len(extra))]
        for r in result.items:
            cell = r["reference"] if name == REFERENCE else r["systems"].get(name, {})
            vals = [_fmt(m, cell["values"][m]) if m in cell.get("values", {}) else
                    ("failed" if m in cell.get("errors", {}) else "—") for m in cols]
            if name != REFERENCE:
                vals += [str(cell.get("aligned", "—")), str(cell.get("clipped", "—")),
                         "—" if cell.get("seconds") is None else f"{cell['seconds']:.3f}"]
            out.append(f"| {r['id']} | {r['seconds']:.2f} | " + " | ".join(vals) + " |")
        out.append("")
    out += ["## Failures", ""]
    if result.failures:
        out += ["| system | item | metric | error |", "|---|---|---|---|"]
        out += [f"| {f['system']} | {f['item']} | {f['metric']} | {f['error'].replace('|', '/')} |"
                for f in result.failures]
    else:
        out.append("None.")
    out += ["", "## Inputs skipped", ""]
    if result.bad_inputs:
        out += ["| input | reason |", "|---|---|"]
        out += [f"| {b['source']} | {b['reason'].replace('|', '/')} |" for b in result.bad_inputs]
    else:
        out.append("None.")
    if plot_files:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plot_files]
    return "\n".join(out) + "\n"


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(result: EvalResult, output: str | Path, plots: int = 3) -> Path:
    """Write ``report.md``, ``results.json`` and ``plots/*.png`` (when matplotlib is installed) into ``output``.

    Returns the path of ``report.md``.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_json_ready(result.to_dict()), indent=1, allow_nan=False) + "\n")
    plot_files: list[str] = []
    try:
        import matplotlib
    except ImportError:
        result.unavailable.setdefault("plots", "not available: matplotlib is not installed; pip install matplotlib "
                                               "(in voxtok[eval])")
    else:
        matplotlib.use("Agg", force=False)
        plot_files = _plots(result, out / "plots", plots)
    report = out / "report.md"
    report.write_text(_markdown(result, [p.relative_to(out).as_posix() for p in map(Path, plot_files)]))
    return report


def _plots(result: EvalResult, folder: Path, count: int) -> list[str]:
    import matplotlib.pyplot as plt
    import torch

    import voxtok.audio as A

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    rate = result.sample_rate
    for k, (item, signals) in enumerate(list(result.examples.items())[:count]):
        fig, axes = plt.subplots(len(signals), 1, figsize=(9, 1.9 * len(signals)), squeeze=False, sharex=True)
        for ax, (name, x) in zip(axes[:, 0], signals.items(), strict=True):
            spec = A.stft(torch.from_numpy(np.asarray(x, dtype=np.float32)), 1024, 256).abs()
            db = 20 * torch.log10(spec.clamp_min(1e-5))
            ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=float(db.max()) - 80,
                      vmax=float(db.max()), extent=(0, len(x) / rate, 0, rate / 2000))
            ax.set_ylabel("kHz")
            ax.set_title(f"{name}", fontsize=9, loc="left")
        axes[-1, 0].set_xlabel("seconds")
        fig.suptitle(f"{item}: reference and reconstructions ({rate} Hz, STFT 1024 / 256)", fontsize=10)
        fig.tight_layout()
        files.append(_save(fig, folder / f"spectrogram_{k}_{_safe(item)}.png"))
    for name, c in result.codes.items():
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
        q = np.arange(len(c["per_codebook"]))
        # Counts on a log scale: a collapsed codebook (1 code of 4096) and a healthy one both stay readable.
        a.bar(q - 0.2, [p["used"] for p in c["per_codebook"]], 0.4, label="codes used")
        a.bar(q + 0.2, [p["perplexity"] for p in c["per_codebook"]], 0.4, label="perplexity")
        a.plot(q, [p["size"] for p in c["per_codebook"]], "k_", markersize=14, label="codebook size")
        a.set_yscale("log")
        a.set_ylim(0.8, 1.5 * max(p["size"] for p in c["per_codebook"]))
        a.set_xlabel("codebook")
        a.legend(fontsize=8)
        a.set_title("codes used and perplexity per codebook", fontsize=9)
        for i, p in enumerate(c["per_codebook"]):
            counts = np.sort(np.asarray(p["counts"]))[::-1]
            counts = counts[counts > 0]
            b.loglog(np.arange(1, len(counts) + 1), counts, lw=1, color=plt.cm.viridis(i / max(1, len(q) - 1)))
        b.set_xlabel("code rank")
        b.set_ylabel("count")
        b.set_title("code counts by rank, one line per codebook", fontsize=9)
        fig.suptitle(f"{name}: codebook usage over {c['frames']} frames", fontsize=10)
        fig.tight_layout()
        files.append(_save(fig, folder / f"codebook_usage_{_safe(name)}.png"))
    shown = [m for m in MAIN if m in result.metrics and _group_of(m) not in result.unavailable]
    if shown and result.items:
        names = [REFERENCE, *(s["name"] for s in result.systems)]
        cols = min(4, len(shown))
        rows = -(-len(shown) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 0.5, 3.4 * rows), squeeze=False)
        for ax in axes.flat[len(shown):]:
            ax.set_visible(False)
        for ax, metric in zip(axes.flat, shown, strict=False):
            data, labels = [], []
            for n in names:
                cells = [r["reference"] if n == REFERENCE else r["systems"].get(n, {}) for r in result.items]
                v = [c["values"][metric] * (100 if metric in PERCENT else 1) for c in cells
                     if metric in c.get("values", {})]
                if v:
                    data.append(v)
                    labels.append(n)
            if data:
                ax.boxplot(data, showmeans=True)
                ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=7)
            else:
                ax.text(0.5, 0.5, "every item failed", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
            ax.set_title(f"{LABELS.get(metric, metric)} {_better(metric)}", fontsize=9)
        fig.suptitle("per-utterance distribution (box: quartiles, triangle: mean)", fontsize=10)
        fig.tight_layout()
        files.append(_save(fig, folder / "metrics.png"))
    return files


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
