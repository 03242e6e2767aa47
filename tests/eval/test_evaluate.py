"""``evaluate``: an identity "codec" scores the metrics' ceilings, added noise lowers every metric monotonically,
failures are recorded per item (never a made-up score), missing backends say "not available", bad inputs are
listed, and the report renders (valid PNGs, every metric with its settings, parseable results.json)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from voxtok import audio as A
from voxtok.eval import backends
from voxtok.eval import metrics as M
from voxtok.eval.evaluation import METRIC_GROUPS, REFERENCE, evaluate, resolve_metrics
from voxtok.eval.report import LABELS

CORE = ["pesq", "stoi", "si_sdr", "mel", "stft"]


def test_identity_ceiling_and_noise_is_monotonic(corpus, systems):
    Noisy = systems.Noisy
    levels = [30, 15, 5]
    result = evaluate(Noisy(None), corpus, metrics=CORE, baselines=[Noisy(s) for s in levels], progress=False)
    assert [s["name"] for s in result.systems] == ["identity", "noise 30 dB", "noise 15 dB", "noise 5 dB"]
    ident = result.summary["identity"]
    assert ident["pesq_wb"]["mean"] == pytest.approx(4.64, abs=0.01)
    assert ident["pesq_nb"]["mean"] == pytest.approx(4.55, abs=0.05)
    assert ident["stoi"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert ident["estoi"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert ident["si_sdr"]["mean"] > 60
    assert ident["mel_distance"]["mean"] < 1e-3
    assert all(ident[m]["n"] == 3 and ident[m]["failed"] == 0 for m in ident)
    for metric in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "mel_distance", "stft_distance"):
        means = [result.summary[s["name"]][metric]["mean"] for s in result.systems]
        ordered = means if metric in ("mel_distance", "stft_distance") else [-m for m in means]
        assert ordered == sorted(ordered) and len(set(means)) == len(means), (metric, means)
    # SI-SDR of white noise at a known SNR is that SNR (the noise is uncorrelated with the speech)
    for snr in levels:
        assert result.summary[f"noise {snr} dB"]["si_sdr"]["mean"] == pytest.approx(snr, abs=0.5)
    # a full-reference metric has no ground-truth cell; the CI shrinks to nothing for identical scores
    assert result.summary[REFERENCE] == {}
    assert result.summary["identity"]["stoi"]["ci95"] == pytest.approx(0.0, abs=1e-6)


def test_failures_are_recorded_per_item(corpus, monkeypatch, systems):
    Noisy, FailsOn = systems.Noisy, systems.FailsOn
    lengths = sorted(A.read(p)[0].shape[-1] for p in sorted(corpus.rglob("*.flac")))
    real_stoi = M.stoi

    def stoi(reference, estimate, sample_rate, extended=False):
        if np.asarray(reference).shape[-1] == lengths[0] and not extended:
            raise ValueError("stoi blew up")
        return real_stoi(reference, estimate, sample_rate, extended)

    monkeypatch.setattr(M, "stoi", stoi)
    result = evaluate(Noisy(None), corpus, metrics=["stoi", "si_sdr"], baselines=[FailsOn(lengths[1])],
                      progress=False)
    s = result.summary["identity"]
    assert (s["stoi"]["n"], s["stoi"]["failed"]) == (2, 1)
    assert (s["estoi"]["n"], s["estoi"]["failed"]) == (3, 0)
    f = result.summary["fails once"]
    assert all((f[m]["n"], f[m]["failed"]) == (2 - (m == "stoi"), 1 + (m == "stoi")) for m in f)
    by = {(x["system"], x["metric"], x["error"]) for x in result.failures}
    assert ("identity", "stoi", "ValueError: stoi blew up") in by
    assert ("fails once", "si_sdr", "codec: RuntimeError: decoder exploded") in by
    assert len(result.failures) == 1 + 3 + 1  # identity stoi; the codec's item (3 metrics); its stoi item
    bad = next(r for r in result.items if r["systems"]["fails once"].get("codec_error"))
    assert bad["systems"]["fails once"]["values"] == {}  # no score stands in for a failure
    assert "(2 failed)" in result.table() and "(1 failed)" in result.table()  # the summary says how many


def test_missing_backends_say_not_available(corpus, monkeypatch, tmp_path, systems):
    Noisy = systems.Noisy
    real = backends._package_dir
    monkeypatch.setattr(backends, "_package_dir", lambda m: None if m == "speechmos" else real(m))
    result = evaluate(Noisy(None), corpus, metrics=["dnsmos", "wer", "si_sdr"], max_items=1, progress=False,
                      asr_model=tmp_path / "no-model", output=tmp_path / "out")
    assert set(result.unavailable) == {"dnsmos", "wer"}
    assert result.unavailable["dnsmos"].startswith("not available: speechmos is not installed; pip install")
    assert "not a faster-whisper model directory" in result.unavailable["wer"]
    assert "--asr-model" in result.unavailable["wer"]
    assert "dnsmos_ovrl" not in result.summary["identity"] and "si_sdr" in result.summary["identity"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| DNSMOS OVRL |  | not available | not available |" in report.replace("↑", "")
    assert "`dnsmos`: not available: speechmos is not installed" in report


def test_report_renders_every_metric_and_setting(corpus, tmp_path, systems):
    Noisy = systems.Noisy
    root = tmp_path / "data"
    shutil.copytree(corpus, root)
    (root / "broken.flac").write_bytes(b"fLaC not really")
    A.write(root / "silence.wav", torch.zeros(1, 8000), 16000)
    out = tmp_path / "out"

    class Coded(Noisy):
        """Noise at 20 dB, with codes: one 8-entry codebook whose code is the frame's loudness rank."""

        def __init__(self):
            super().__init__(20, "coded")
            self.frame_rate, self.codebook_sizes = 50.0, [8]

        def reconstruct(self, audio, sample_rate):
            rec = super().reconstruct(audio, sample_rate)
            frames = rec.audio[: rec.audio.shape[-1] // 320 * 320].reshape(-1, 320).pow(2).mean(-1)
            rec.codes = (8 * frames / (frames.max() + 1e-9)).long().clamp(max=7)[None]
            return rec

    result = evaluate(Noisy(None), root, metrics=[*CORE, "codes"], baselines=[Coded()], output=out, plots=2,
                      progress=False, save_audio=True)
    assert sorted(b["source"].rsplit("/", 1)[-1] for b in result.bad_inputs) == ["broken.flac", "silence.wav"]
    assert any("silent" in b["reason"] for b in result.bad_inputs)
    assert result.timing["utterances"] == 3
    report = (out / "report.md").read_text()
    for metric in result.metrics:
        assert LABELS[metric] in report and f"(`{metric}`): {result.settings[metric]}" in report
    assert "soxr HQ" in report and "P.862.2" in report and "at 16000 Hz" in report
    assert "broken.flac" in report and "## Codes" in report and "| 0 | 8 |" in report
    data = json.loads((out / "results.json").read_text())
    assert data["sample_rate"] == 16000 and len(data["items"]) == 3
    assert data["summary"]["coded"]["pesq_wb"]["n"] == 3
    codes = data["codes"]["coded"]
    assert codes["bitrate_nominal"] == pytest.approx(50 * 3 / 1000)
    assert 0 < codes["bitrate_entropy"] <= codes["bitrate_nominal"]
    assert sum(codes["per_codebook"][0]["counts"]) == codes["frames"]
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert len(pngs) == 4 and "metrics.png" in pngs and "codebook_usage_coded.png" in pngs
    import matplotlib.image

    for p in (out / "plots").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(p)
        assert img.ndim == 3 and min(img.shape[:2]) > 100 and img.std() > 0.01
        assert f"plots/{p.name}" in report
    wavs = sorted((out / "audio" / "coded").glob("*.wav"))
    assert len(wavs) == 3 and A.read(wavs[0])[1] == 16000


def test_public_name():
    import voxtok.eval
    from voxtok.eval import evaluate as public

    assert public is evaluate and voxtok.eval.evaluate is evaluate and callable(public)


def test_resolve_metrics(systems):
    Noisy = systems.Noisy
    assert resolve_metrics(None) == list(METRIC_GROUPS)
    assert resolve_metrics(["wer", "estoi", "pesq_nb"]) == ["pesq", "stoi", "wer"]
    with pytest.raises(ValueError, match="unknown metric 'visqol'"):
        resolve_metrics(["visqol"])
    with pytest.raises(ValueError, match="at least 8000"):
        evaluate(Noisy(None), [], sample_rate=4000)
