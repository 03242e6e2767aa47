"""Semantic features from a transformers speech model, and an encoder that fuses several encoders' outputs.

X-codec2 quantizes acoustic features (a conv encoder) concatenated with semantic features (a frozen
self-supervised speech model), projected to one latent. ``HFAudioEncoder`` makes any transformers audio encoder
that takes raw waveforms (``input_values``: wav2vec2, HuBERT, WavLM, data2vec-audio) a voxtok ``Encoder``;
``ConcatEncoder`` runs several encoders on the same audio and fuses their latents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.models import hf
from voxtok.models.base import Encoder


class HFAudioEncoder(Encoder):
    """A transformers speech model as an ``Encoder``: audio ``[B, 1, S]`` -> hidden states ``[B, H, ceil(S/hop)]``.

    The model's own frame count (``floor((S - receptive field) / hop) + 1`` for wav2vec2-style feature
    extractors) is linearly interpolated to ``ceil(S / hop)`` so its frames line up with the codec's.

    Args:
        model: a config dict with ``model_type`` (random weights; e.g. ``{"model_type": "hubert"}``), a local
            directory saved with transformers' ``save_pretrained``, or a model id already in the Hugging Face cache
            (``voxtok.models.hf``: nothing is downloaded).
        layer: which ``hidden_states`` entry to return (0 = the feature projection, -1 = the last layer), a list of
            entries to average, or ``"average"``.
        freeze: keep the model frozen (eval mode, no gradients), as X-codec2 keeps its semantic model.
    """

    def __init__(self, model: dict[str, Any] | str, layer: hf.Layer = -1, freeze: bool = True) -> None:
        super().__init__()
        self.model = hf.disable_augmentation(hf.build_model(model))
        config = self.model.config
        strides = getattr(config, "conv_stride", None)
        if strides is None or not hasattr(config, "hidden_size"):
            raise ValueError(f"{type(self.model).__name__} is not a raw-waveform speech encoder (no conv_stride)")
        self.layer = hf.check_layer(layer, hf.num_hidden_states(self.model))
        self.freeze = freeze
        self.channels = 1
        self.dimension = int(config.hidden_size)
        self.hop_length = int(math.prod(strides))
        # The model makes no frame from fewer samples than its receptive field, and its first GroupNorm (one
        # group per channel over time) refuses a single frame: shorter input is zero-padded to this length.
        kernels = list(getattr(config, "conv_kernel", [1] * len(strides)))
        field, jump = 1, 1
        for k, st in zip(kernels, strides, strict=True):
            field += (k - 1) * jump
            jump *= st
        self.min_samples = max(field, kernels[0] + strides[0])
        if freeze:
            hf.freeze(self.model)

    def train(self, mode: bool = True) -> HFAudioEncoder:
        super().train(mode)
        if self.freeze:
            hf.freeze(self.model)  # a frozen model never runs dropout
        return self

    def output_length(self, input_length: int) -> int:
        return -(-int(input_length) // self.hop_length)

    def forward(self, audio: Tensor) -> Tensor:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"HFAudioEncoder takes mono audio [B, 1, S]; got shape {tuple(audio.shape)}")
        t = self.output_length(audio.shape[-1])
        if audio.shape[-1] < self.min_samples:
            audio = F.pad(audio, (0, self.min_samples - audio.shape[-1]))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            out = self.model(input_values=audio[:, 0], output_hidden_states=True)
        h = hf.select_layer(out.hidden_states, self.layer).transpose(1, 2)  # [B, H, frames]
        if h.shape[-1] != t:
            h = F.interpolate(h, size=t, mode="linear", align_corners=False)
        return h


class ConcatEncoder(Encoder):
    """Several encoders on the same audio; latents concatenated on channels and projected (1x1 conv) to
    ``dimension``: ``[B, C, S]`` -> ``[B, dimension, ceil(S / hop)]``.

    Args:
        encoders: encoders with the same ``hop_length`` (X-codec2: an acoustic conv encoder and a semantic one).
        dimension: the fused latent width.
    """

    def __init__(self, encoders: Sequence[nn.Module], dimension: int) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(f"ConcatEncoder fuses at least two encoders; got {len(encoders)}")
        hops = [int(e.hop_length) for e in encoders]
        if len(set(hops)) != 1:
            raise ValueError(f"encoders must share one hop_length; got {hops}")
        self.encoders = nn.ModuleList(encoders)
        self.channels = int(getattr(encoders[0], "channels", 1))
        self.dimension = int(dimension)
        self.hop_length = hops[0]
        self.proj = nn.Conv1d(sum(int(e.dimension) for e in encoders), dimension, kernel_size=1)

    def output_length(self, input_length: int) -> int:
        return -(-int(input_length) // self.hop_length)

    def forward(self, audio: Tensor) -> Tensor:
        t = self.output_length(audio.shape[-1])
        parts = [e(audio)[..., :t] for e in self.encoders]
        return self.proj(torch.cat(parts, dim=1))
