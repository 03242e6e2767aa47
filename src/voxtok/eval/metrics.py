"""Per-utterance quality metrics: the one implementation used by ``voxtok eval`` and by training validation.

Batched torch metrics take ``reference`` and ``estimate`` audio ``[B, 1, S]`` (``[B, S]`` and ``[S]`` are
promoted) with optional ``lengths [B]`` in samples and return one value per item, ``[B]``:
``mel_distance``, ``stft_distance``, ``si_sdr``. The perceptual metrics take one utterance as 1-D audio (a
tensor or an array) and return a float: ``stoi`` (``pystoi``), ``pesq`` (``pesq``). Each states its settings in
``SETTINGS`` so that reports print them beside the score.

Code statistics (``code_statistics``: nominal and entropy bitrate, per-codebook usage and perplexity) and
``mean_ci`` (a mean with its 95% confidence interval) serve the evaluation report. The model-based metrics (DNSMOS,
WER / CER, speaker similarity) need optional packages and live in ``voxtok.eval.backends``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

import voxtok.audio as A
from voxtok.losses.spectral import MultiResolutionSTFTLoss, MultiScaleMelLoss
from voxtok.losses.spectral import si_sdr as _si_sdr

# What each metric computes, printed with its scores (reports, docs).
SETTINGS: dict[str, str] = {
    "mel_distance": "multi-scale log10-mel L1 at the rate it is given (training: the codec's; voxtok eval: "
                    "--sample-rate), windows 32-2048 (hop = window / 4), 5-320 mels (DAC's MelSpectrogramLoss "
                    "settings); lower is better",
    "stft_distance": "multi-resolution STFT loss (spectral convergence + log-magnitude L1; FFT 1024 / 2048 / 512, "
                     "hop 120 / 240 / 50, Parallel WaveGAN); lower is better",
    "si_sdr": "scale-invariant SDR in dB over the valid samples, zero-mean signals; higher is better",
    "stoi": "pystoi STOI (resamples to 10 kHz internally); 0-1, higher is better",
    "estoi": "pystoi extended STOI; 0-1, higher is better",
    "pesq_wb": "pesq wide-band (ITU-T P.862.2) at 16 kHz, audio resampled with soxr HQ; 1.04-4.64",
    "pesq_nb": "pesq narrow-band (ITU-T P.862) at 8 kHz, audio resampled with soxr HQ; 1.02-4.55 (MOS-LQO)",
    "bitrate_nominal": "frame rate x sum over codebooks of log2(codebook size), kbps",
    "bitrate_entropy": "frame rate x sum over codebooks of the entropy (bits) of the codes produced, counted over "
                       "every valid frame of every utterance (unigram: what an ideal entropy coder of single codes "
                       "would need), kbps",
    "codebook_usage": "fraction of a codebook's entries produced at least once over all utterances",
    "codebook_perplexity": "2 ** entropy of a codebook's code distribution over all utterances (1 .. codebook size)",
}


@lru_cache(maxsize=8)
def _mel_loss(sample_rate: int) -> MultiScaleMelLoss:
    return MultiScaleMelLoss(sample_rate)


@lru_cache(maxsize=1)
def _stft_loss() -> MultiResolutionSTFTLoss:
    return MultiResolutionSTFTLoss()


def _pair(reference: Tensor, estimate: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    ref, est = A.promote(reference).float(), A.promote(estimate).float().to(reference.device)
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate must have the same shape; got {tuple(ref.shape)} and "
                         f"{tuple(est.shape)}")
    if lengths is None:
        lengths = torch.full((ref.shape[0],), ref.shape[-1], dtype=torch.long)
    return ref, est, torch.as_tensor(lengths, dtype=torch.long).reshape(-1)


def _per_item(loss: torch.nn.Module, reference: Tensor, estimate: Tensor, lengths: Tensor | None) -> Tensor:
    ref, est, lengths = _pair(reference, estimate, lengths)
    # One item at a time, cut to its own length: an item's score never depends on the batch it came in.
    with torch.no_grad():
        out = [loss(est[i : i + 1, :, : int(n)], ref[i : i + 1, :, : int(n)]) for i, n in enumerate(lengths)]
    return torch.stack(out).float().cpu()


def mel_distance(reference: Tensor, estimate: Tensor, sample_rate: int, lengths: Tensor | None = None) -> Tensor:
    """Multi-scale log-mel L1 distance per item, ``[B]`` (see ``SETTINGS["mel_distance"]``)."""
    ref = A.promote(reference)
    loss = _mel_loss(int(sample_rate)).to(ref.device)
    return _per_item(loss, ref, estimate, lengths)


def stft_distance(reference: Tensor, estimate: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Multi-resolution STFT distance per item, ``[B]`` (see ``SETTINGS["stft_distance"]``)."""
    return _per_item(_stft_loss(), reference, estimate, lengths)


def si_sdr(reference: Tensor, estimate: Tensor, lengths: Tensor | None = None) -> Tensor:
    """SI-SDR in dB per item, ``[B]`` (mono: channels averaged)."""
    ref, est, lengths = _pair(reference, estimate, lengths)
    with torch.no_grad():
        return _si_sdr(est, ref, lengths.to(ref.device)).mean(dim=1).float().cpu()


def _numpy_1d(x: Any, name: str) -> np.ndarray:
    a = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    a = np.squeeze(a)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be one non-empty mono signal; got shape {np.shape(x)}")
    return a.astype(np.float64)


def stoi(reference: Any, estimate: Any, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended=True``) of one utterance, 1-D audio at ``sample_rate``."""
    from pystoi import stoi as _stoi

    ref, est = _numpy_1d(reference, "reference"), _numpy_1d(estimate, "estimate")
    n = min(ref.size, est.size)
    return float(_stoi(ref[:n], est[:n], int(sample_rate), extended=extended))


def pesq(reference: Any, estimate: Any, sample_rate: int, mode: str = "wb") -> float:
    """PESQ of one utterance: ``mode="wb"`` at 16 kHz, ``"nb"`` at 8 kHz (audio resampled with soxr).

    Raises whatever ``pesq`` raises (for example on an utterance with no speech): callers record the failure
    rather than a made-up score.
    """
    from pesq import pesq as _pesq

    if mode not in ("wb", "nb"):
        raise ValueError(f"PESQ mode must be 'wb' or 'nb'; got {mode!r}")
    rate = 16000 if mode == "wb" else 8000
    ref, est = _numpy_1d(reference, "reference"), _numpy_1d(estimate, "estimate")
    if int(sample_rate) != rate:
        ref = A.resample(ref.astype(np.float32), int(sample_rate), rate).astype(np.float64)
        est = A.resample(est.astype(np.float32), int(sample_rate), rate).astype(np.float64)
    n = min(ref.size, est.size)
    return float(_pesq(rate, ref[:n], est[:n], mode))


# -----------------------------------------------------------------------------------------------------------
# Code statistics and confidence intervals


def code_statistics(codes: list[Tensor], codebook_sizes: list[int], frame_rate: float) -> dict[str, Any]:
    """Usage, perplexity and bitrates of the codes a codec produced over a set of utterances.

    Args:
        codes: one ``[Q, T_i]`` integer tensor per utterance, valid frames only.
        codebook_sizes: ``K_q`` for each of the ``Q`` codebooks.
        frame_rate: frames per second.

    Returns:
        A JSON-ready dict: ``bitrate_nominal`` and ``bitrate_entropy`` (kbps), ``frames`` (all utterances),
        ``codebook_usage`` / ``codebook_perplexity`` (means over codebooks) and ``per_codebook``: for each
        codebook ``size``, ``used`` (distinct codes), ``usage``, ``entropy_bits``, ``perplexity`` and ``counts``
        (how often each code was produced, ``[K_q]``).

    Raises:
        ValueError: no frames, codebooks that differ between utterances, or a code outside ``[0, K_q)``.
    """
    q = len(codebook_sizes)
    if not codes or sum(int(c.shape[-1]) for c in codes) == 0:
        raise ValueError("code_statistics needs at least one frame of codes")
    per_codebook = []
    for i, k in enumerate(codebook_sizes):
        counts = torch.zeros(int(k), dtype=torch.long)
        for c in codes:
            if c.dim() != 2 or c.shape[0] != q:
                raise ValueError(f"codes must be [Q, T] with Q = {q}; got shape {tuple(c.shape)}")
            row = c[i].long().cpu()
            if row.numel() and (row.min() < 0 or row.max() >= k):
                bad = int(row.min()) if row.min() < 0 else int(row.max())
                raise ValueError(f"codes must be in [0, {k}); got {bad} in codebook {i}")
            counts += torch.bincount(row, minlength=int(k))
        p = counts[counts > 0].double() / counts.sum()
        entropy = max(0.0, float(-(p * p.log2()).sum()))  # a single code: 0 bits, not -0.0
        per_codebook.append({
            "size": int(k), "used": int((counts > 0).sum()), "usage": float((counts > 0).sum()) / int(k),
            "entropy_bits": entropy, "perplexity": 2.0 ** entropy, "counts": counts.tolist(),
        })
    return {
        "bitrate_nominal": float(frame_rate) * sum(float(np.log2(k)) for k in codebook_sizes) / 1000.0,
        "bitrate_entropy": float(frame_rate) * sum(c["entropy_bits"] for c in per_codebook) / 1000.0,
        "frames": sum(int(c.shape[-1]) for c in codes),
        "codebook_usage": float(np.mean([c["usage"] for c in per_codebook])),
        "codebook_perplexity": float(np.mean([c["perplexity"] for c in per_codebook])),
        "per_codebook": per_codebook,
    }


def mean_ci(values: Any, confidence: float = 0.95) -> tuple[float, float | None]:
    """Mean and the half-width of its Student-t confidence interval (``None`` for fewer than two values).

    ``mean +- t_{(1 + confidence) / 2, n - 1} * s / sqrt(n)``, ``s`` the sample standard deviation.
    """
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if v.size == 1:
        return float(v[0]), None
    half = student_t.ppf((1 + confidence) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)
