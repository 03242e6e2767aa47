"""Codebook health (usage, perplexity, dead codes over a whole validation set) and the small pieces the loggers
share: per-codebook scalars, a mel-spectrogram picture without matplotlib."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

import voxtok.audio as A
from voxtok.quantizers.base import usage_metrics

__all__ = ["CodeHistogram", "codebook_scalars", "mel_image"]


class CodeHistogram:
    """Code counts per codebook over many batches: ``counts [Q, K_max]`` (float64, so sums stay exact)."""

    def __init__(self, sizes: list[int], device: torch.device | str = "cpu") -> None:
        self.sizes = [int(k) for k in sizes]
        self.counts = torch.zeros(len(self.sizes), max(self.sizes), dtype=torch.float64, device=device)

    def add(self, codes: Tensor, mask: Tensor | None) -> None:
        """``codes [B, Q', T]`` (a prefix of the codebooks) with ``mask [B, T]`` (True = valid frame) or None."""
        k = self.counts.shape[1]
        for q in range(codes.shape[1]):
            c = codes[:, q]
            c = c[mask] if mask is not None else c.reshape(-1)
            self.counts[q] += torch.bincount(c.reshape(-1), minlength=k)[:k].to(self.counts)

    def stats(self) -> dict[str, Tensor]:
        """Per codebook ``[Q]``: ``usage`` (fraction of its codes seen), ``perplexity`` (exp of the code entropy),
        ``dead`` (codes never seen). A codebook that saw no frame has usage 0 and perplexity 0."""
        sizes = torch.tensor(self.sizes, dtype=torch.float64, device=self.counts.device)
        used = (self.counts > 0).sum(-1).double()
        # Perplexity as the quantizers compute it; usage over each codebook's own size, not the padded K_max.
        perplexity = usage_metrics(self.counts)["perplexity"]
        return {"usage": used / sizes, "perplexity": perplexity, "dead": sizes - used}


def codebook_scalars(prefix: str, metrics: dict[str, Tensor], per_codebook: bool = True) -> dict[str, float]:
    """``{prefix/name/q{i}: value}`` for per-codebook tensors ``[Q]``, plus ``prefix/name/mean`` (``/sum`` for
    counts: dead codes, restarts)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        v = value.detach().float().reshape(-1).cpu()
        if v.numel() == 0:
            continue
        counts = name in ("dead", "dead_codes", "restarts")
        out[f"{prefix}/{name}/{'sum' if counts else 'mean'}"] = float(v.sum() if counts else v.mean())
        if per_codebook and v.numel() > 1:
            out.update({f"{prefix}/{name}/q{i}": float(x) for i, x in enumerate(v.tolist())})
    return out


# A perceptually ordered ramp (dark blue -> teal -> yellow), enough to read a spectrogram without matplotlib.
_RAMP = np.array([[0.05, 0.03, 0.25], [0.2, 0.2, 0.55], [0.1, 0.5, 0.55], [0.4, 0.75, 0.35], [0.99, 0.9, 0.15]])


def mel_image(audio: Tensor, sample_rate: int, n_fft: int = 1024, n_mels: int = 80) -> np.ndarray:
    """A log-mel picture of mono ``audio [S]`` (or ``[1, S]``): ``[n_mels, frames, 3]`` uint8, low bands at the
    bottom, 80 dB of range (for TensorBoard's ``add_image(..., dataformats="HWC")``)."""
    x = audio.detach().float().reshape(-1).cpu()
    n_fft = min(n_fft, max(16, 2 ** int(np.log2(max(16, x.numel())))))
    mel = A.mel_spectrogram(x[None], sample_rate, n_fft, n_fft // 4, n_mels=min(n_mels, n_fft // 4), power=1.0)[0]
    db = 20 * torch.log10(mel.clamp_min(1e-5))
    db = (db - (db.max() - 80)).clamp_min(0) / 80
    v = db.flip(0).numpy()
    pos = v * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return (rgb * 255).round().astype(np.uint8)
