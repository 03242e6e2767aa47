"""SEANet convolutional encoder and decoder (EnCodec, DAC, Mimi, DM-Codec, WavTokenizer's encoder).

One layout serves every family; the named configurations (``SEANetEncoder.CONFIGS`` / ``SEANetDecoder.CONFIGS``,
the tables ``ENCODER_CONFIGS`` / ``DECODER_CONFIGS`` below) pick the sizes and options of each reference model:

Encoder ``layers`` (a flat ``nn.ModuleList``, the same order as transformers' ``EncodecEncoder`` / ``MimiEncoder``
and, flattened, DAC's ``Encoder``)::

    Conv1d(channels -> n_filters, kernel_size)
    for each stride r (input -> latent order), width w = n_filters * 2**i:
        n_residual_layers x ResidualBlock(w, dilation = dilation_base**j)
        activation(w); Conv1d(w -> 2w, kernel 2r, stride r)
    [LSTM(width, lstm_layers) with skip]
    activation; Conv1d(width -> dimension, last_kernel_size)

Decoder ``layers`` mirror it: ``Conv1d(dimension -> n_filters * 2**len(ratios), kernel_size)``, [LSTM], then per
stride ``activation; ConvTranspose1d(w -> w/2, kernel 2r, stride r); residual blocks``, then
``activation; Conv1d(n_filters -> channels, last_kernel_size)`` and an optional ``tanh`` (DAC).

A ``ResidualBlock`` is ``block = [act, Conv1d(w -> w/compress, residual_kernel_size, dilation), act,
Conv1d(w/compress -> w, 1)]`` plus ``shortcut`` (identity when ``true_skip``, else a 1x1 ``Conv1d``):
EnCodec / WavTokenizer use the 1x1 shortcut and compress 2; Mimi an identity; DAC an identity, compress 1,
kernel 7 and dilations 1, 3, 9 with Snake activations.

Lengths: the encoder gives ``ceil(S / hop)`` frames for every ``S >= 1``. Each strided convolution pads its input
on the right (zeros, or a reflection in ``reflect`` mode) just enough to complete its last stride (EnCodec's and
Mimi's rule); with ``pad_to_hop=True`` (DAC) the audio is instead zero-padded on the right to a multiple of
``hop_length`` before the first layer, as DAC's preprocessing does. The decoder gives ``T * hop`` samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.audio import promote
from voxtok.models.base import Decoder, Encoder, NamedConfigs
from voxtok.models.conv import (
    LSTM,
    Conv1d,
    ConvTranspose1d,
    Snake1d,
    activation,
    apply_activation,
    remove_weight_norm,
    time_major,
)

__all__ = [
    "DECODER_CONFIGS",
    "ENCODER_CONFIGS",
    "ResidualBlock",
    "SEANetDecoder",
    "SEANetEncoder",
]


# Reference configurations. Sources: EnCodec (audiocraft / transformers EncodecConfig), DAC
# (descript-audio-codec; transformers DacConfig), Mimi (moshi; transformers MimiConfig), WavTokenizer
# (its EncodecFeatures: a non-causal EnCodec SEANet with dimension 512), DM-Codec (SpeechTokenizer's SEANet:
# 64 filters, 1024-d, bidirectional LSTM in the encoder).
_ENCODEC = {
    "channels": 1, "dimension": 128, "n_filters": 32, "n_residual_layers": 1, "residual_kernel_size": 3,
    "dilation_base": 2, "kernel_size": 7, "last_kernel_size": 7, "activation": "elu", "causal": True,
    "pad_mode": "reflect", "norm": "weight_norm", "compress": 2, "true_skip": False, "lstm_layers": 2,
}  # fmt: skip
_DAC = {
    "channels": 1, "dimension": 1024, "n_residual_layers": 3, "residual_kernel_size": 7, "dilation_base": 3,
    "kernel_size": 7, "activation": "snake", "causal": False, "pad_mode": "constant", "norm": "weight_norm",
    "compress": 1, "true_skip": True, "lstm_layers": 0,
}  # fmt: skip
_MIMI = {
    "channels": 1, "dimension": 512, "n_filters": 64, "n_residual_layers": 1, "residual_kernel_size": 3,
    "dilation_base": 2, "kernel_size": 7, "last_kernel_size": 3, "activation": "elu", "causal": True,
    "pad_mode": "constant", "norm": "none", "compress": 2, "true_skip": True, "lstm_layers": 0,
}  # fmt: skip
_TINY = {
    "channels": 1, "dimension": 8, "n_filters": 4, "n_residual_layers": 1, "residual_kernel_size": 3,
    "dilation_base": 2, "kernel_size": 7, "last_kernel_size": 3, "activation": "elu", "compress": 2,
    "lstm_layers": 1,
}  # fmt: skip

ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    "encodec-24khz": {**_ENCODEC, "ratios": [2, 4, 5, 8]},
    "dac-16khz": {**_DAC, "n_filters": 64, "ratios": [2, 4, 5, 8], "last_kernel_size": 3, "pad_to_hop": True},
    "dac-24khz": {**_DAC, "n_filters": 64, "ratios": [2, 4, 5, 8], "last_kernel_size": 3, "pad_to_hop": True},
    "dac-44khz": {**_DAC, "n_filters": 64, "ratios": [2, 4, 8, 8], "last_kernel_size": 3, "pad_to_hop": True},
    "mimi": {**_MIMI, "ratios": [4, 5, 6, 8]},
    "wavtokenizer-75hz": {**_ENCODEC, "dimension": 512, "causal": False, "ratios": [2, 4, 5, 8]},
    "wavtokenizer-40hz": {**_ENCODEC, "dimension": 512, "causal": False, "ratios": [4, 5, 5, 6]},
    "dmcodec": {
        **_ENCODEC,
        "dimension": 1024,
        "n_filters": 64,
        "causal": False,
        "ratios": [2, 4, 5, 8],
        "lstm_bidirectional": True,
    },  # fmt: skip
    "tiny": {**_TINY, "ratios": [2, 3], "causal": False, "pad_mode": "reflect", "norm": "weight_norm"},
    "tiny-causal": {**_TINY, "ratios": [2, 3], "causal": True, "pad_mode": "constant", "norm": "weight_norm"},
    "tiny-snake": {
        **_TINY,
        **{k: _DAC[k] for k in ("activation", "residual_kernel_size", "dilation_base", "compress")},
        "ratios": [2, 3],
        "causal": False,
        "pad_mode": "constant",
        "norm": "weight_norm",
        "true_skip": True,
        "lstm_layers": 0,
        "n_residual_layers": 2,
        "pad_to_hop": True,
    },  # fmt: skip
}
"""Encoder configurations by name (keyword arguments of ``SEANetEncoder``)."""

_DEC_DROP = ("lstm_bidirectional", "pad_to_hop")


def _decoder_from(enc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    cfg = {k: v for k, v in enc.items() if k not in _DEC_DROP}
    cfg["ratios"] = list(reversed(enc["ratios"]))
    cfg.update(changes)
    return cfg


DECODER_CONFIGS: dict[str, dict[str, Any]] = {
    "encodec-24khz": _decoder_from(ENCODER_CONFIGS["encodec-24khz"]),
    # DAC's decoder is wider than its encoder: decoder_dim 1536 = 96 * 2**4.
    "dac-16khz": _decoder_from(ENCODER_CONFIGS["dac-16khz"], n_filters=96, last_kernel_size=7, final_activation="tanh"),
    "dac-24khz": _decoder_from(ENCODER_CONFIGS["dac-24khz"], n_filters=96, last_kernel_size=7, final_activation="tanh"),
    "dac-44khz": _decoder_from(ENCODER_CONFIGS["dac-44khz"], n_filters=96, last_kernel_size=7, final_activation="tanh"),
    "mimi": _decoder_from(ENCODER_CONFIGS["mimi"]),
    # WavTokenizer decodes with Vocos; this mirrored SEANet decoder is for ablations and the tests.
    "wavtokenizer-75hz": _decoder_from(ENCODER_CONFIGS["wavtokenizer-75hz"]),
    "wavtokenizer-40hz": _decoder_from(ENCODER_CONFIGS["wavtokenizer-40hz"]),
    "dmcodec": _decoder_from(ENCODER_CONFIGS["dmcodec"]),
    "tiny": _decoder_from(ENCODER_CONFIGS["tiny"]),
    "tiny-causal": _decoder_from(ENCODER_CONFIGS["tiny-causal"]),
    "tiny-snake": _decoder_from(ENCODER_CONFIGS["tiny-snake"], final_activation="tanh"),
}
"""Decoder configurations by name (keyword arguments of ``SEANetDecoder``)."""


class ResidualBlock(nn.Module):
    """SEANet residual block ``x -> shortcut(x) + block(x)`` on ``[B, w, T]`` (length kept)."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        dilation: int,
        compress: int,
        act: str,
        true_skip: bool,
        conv: dict[str, Any],
    ) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.ModuleList(
            [
                activation(act, dim),
                Conv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
                activation(act, hidden),
                Conv1d(hidden, dim, 1, **conv),
            ]
        )
        self.shortcut: nn.Module = nn.Identity() if true_skip else Conv1d(dim, dim, 1, **conv)

    def forward(self, x: Tensor) -> Tensor:
        # x is read twice (block and shortcut), so only the block's later tensors are overwritten in place.
        y = x
        for i, layer in enumerate(self.block):
            y = apply_activation(layer, y, inplace=i > 0) if i % 2 == 0 else layer(y)
        if torch.is_grad_enabled():
            return self.shortcut(x) + y
        return y.add_(self.shortcut(x))


class _SEANetStack(NamedConfigs):
    """What the SEANet encoder and decoder share: their named-config table and the layer-derived lengths."""

    config_family = "SEANet"
    layers: nn.ModuleList

    def _through_layers(self, n: int) -> int:
        # Only the (transposed) convolutions change the length; activations, residual blocks and the LSTM keep it.
        for layer in self.layers:
            if isinstance(layer, (Conv1d, ConvTranspose1d)):
                n = layer.output_length(n)
        return n

    def remove_weight_norm(self) -> Self:
        """Fold weight norm into plain weights for inference (same outputs, fewer ops). Returns self."""
        remove_weight_norm(self)
        return self


def _checked_length(input_length: int) -> int:
    n = int(input_length)
    if n < 0:
        raise ValueError(f"input_length must be >= 0; got {n}")
    return n


def _check_common(channels: int, dimension: int, n_filters: int, ratios: Sequence[int], compress: int) -> None:
    if channels < 1 or dimension < 1 or n_filters < 1:
        raise ValueError(f"channels, dimension, n_filters must be >= 1; got {channels}, {dimension}, {n_filters}")
    if not ratios or any(int(r) < 1 for r in ratios):
        raise ValueError(f"ratios must be a non-empty list of strides >= 1; got {list(ratios)}")
    if compress < 1 or n_filters % compress:
        raise ValueError(f"compress must be >= 1 and divide n_filters ({n_filters}); got {compress}")


class SEANetEncoder(_SEANetStack, Encoder):
    """SEANet encoder: audio ``[B, C, S]`` -> latents ``[B, dimension, ceil(S / hop_length)]``.

    Args:
        channels: audio channels C.
        dimension: latent width D.
        n_filters: width after the first convolution; doubled at every stride.
        ratios: strides in the order they are applied (input -> latent). Note EnCodec / Mimi configs list them
            in decoder order and reverse them for the encoder; DAC's ``encoder_rates`` are in this order.
        n_residual_layers: residual blocks per stride; block j uses dilation ``dilation_base ** j``.
        residual_kernel_size, dilation_base, compress, true_skip: residual block options (see module docstring).
        kernel_size: first convolution's kernel. last_kernel_size: last convolution's kernel.
        activation: ``"elu"`` or ``"snake"`` (per-channel alpha, DAC).
        causal: causal (left) padding everywhere; streamable when ``pad_mode`` is not ``"reflect"``.
        pad_mode: ``"constant"``, ``"reflect"`` or ``"replicate"``.
        norm: ``"weight_norm"`` or ``"none"`` for every convolution.
        lstm_layers: 0 for none; else an LSTM with skip before the last convolution.
        lstm_bidirectional: bidirectional LSTM (SpeechTokenizer / DM-Codec); doubles the width it outputs.
        pad_to_hop: zero-pad the audio to a multiple of the hop first (DAC) instead of per strided layer.

    Use ``SEANetEncoder.named(name)`` for the reference sizes in ``SEANetEncoder.CONFIGS``.
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = ENCODER_CONFIGS

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (2, 4, 5, 8),
        n_residual_layers: int = 1,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        activation: str = "elu",
        causal: bool = True,
        pad_mode: str = "reflect",
        norm: str = "weight_norm",
        compress: int = 2,
        true_skip: bool = False,
        lstm_layers: int = 2,
        lstm_bidirectional: bool = False,
        pad_to_hop: bool = False,
    ) -> None:
        super().__init__()
        ratios = [int(r) for r in ratios]
        _check_common(channels, dimension, n_filters, ratios, compress)
        self.channels = channels
        self.dimension = dimension
        self.ratios = ratios
        self.hop_length = math.prod(ratios)
        self.causal = causal
        self.pad_to_hop = pad_to_hop
        conv = {"causal": causal, "pad_mode": pad_mode, "norm": norm}

        layers: list[nn.Module] = [Conv1d(channels, n_filters, kernel_size, **conv)]
        width = n_filters
        for ratio in ratios:
            for j in range(n_residual_layers):
                layers.append(
                    ResidualBlock(width, residual_kernel_size, dilation_base**j, compress, activation, true_skip, conv)
                )
            layers.append(_act(activation, width))
            layers.append(Conv1d(width, width * 2, kernel_size=2 * ratio, stride=ratio, **conv))
            width *= 2
        if lstm_layers:
            layers.append(LSTM(width, lstm_layers, bidirectional=lstm_bidirectional))
            width *= 2 if lstm_bidirectional else 1
        layers.append(_act(activation, width))
        layers.append(Conv1d(width, dimension, last_kernel_size, **conv))
        self.layers = nn.ModuleList(layers)

    def output_length(self, input_length: int) -> int:
        """Frames for ``input_length`` samples, derived layer by layer: ``ceil(S / hop_length)``."""
        n = _checked_length(input_length)
        if self.pad_to_hop:
            n = -(-n // self.hop_length) * self.hop_length
        return self._through_layers(n)

    def forward(self, audio: Tensor) -> Tensor:
        """Audio ``[B, C, S]`` (``[B, S]`` / ``[S]`` promoted) -> latents ``[B, dimension, ceil(S / hop)]``.

        While streaming, each call returns the frames completed so far (``[B, D, T_new]``, possibly empty); the
        samples of an unfinished frame wait in the layers' buffers for the next call.
        """
        x = promote(audio)
        if x.shape[1] != self.channels:
            raise ValueError(f"expected audio with {self.channels} channel(s) [B, C, S]; got shape {tuple(x.shape)}")
        if not self.is_streaming:
            if x.shape[-1] == 0:
                raise ValueError("audio is empty: the encoder needs at least 1 sample")
            if self.pad_to_hop and x.shape[-1] % self.hop_length:
                x = F.pad(x, (0, self.hop_length - x.shape[-1] % self.hop_length))
        return _run(self.layers, x).contiguous()


class SEANetDecoder(_SEANetStack, Decoder):
    """SEANet decoder: latents ``[B, dimension, T]`` -> audio ``[B, channels, T * hop_length]``.

    Arguments as ``SEANetEncoder``, except: ``ratios`` are the upsampling strides in the order applied
    (latent -> audio; e.g. ``(8, 5, 4, 2)``), ``n_filters`` is the width of the last stage (the first is
    ``n_filters * 2**len(ratios)``), ``trim_right_ratio`` (causal only) splits each transposed convolution's
    trim as in EnCodec, and ``final_activation`` is ``None`` or ``"tanh"`` (DAC).
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = DECODER_CONFIGS

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        activation: str = "elu",
        causal: bool = True,
        pad_mode: str = "reflect",
        norm: str = "weight_norm",
        compress: int = 2,
        true_skip: bool = False,
        lstm_layers: int = 2,
        trim_right_ratio: float = 1.0,
        final_activation: str | None = None,
    ) -> None:
        super().__init__()
        ratios = [int(r) for r in ratios]
        _check_common(channels, dimension, n_filters, ratios, compress)
        if final_activation not in (None, "tanh"):
            raise ValueError(f"final_activation must be None or 'tanh'; got {final_activation!r}")
        self.channels = channels
        self.dimension = dimension
        self.ratios = ratios
        self.hop_length = math.prod(ratios)
        self.causal = causal
        conv = {"causal": causal, "pad_mode": pad_mode, "norm": norm}

        width = n_filters * 2 ** len(ratios)
        layers: list[nn.Module] = [Conv1d(dimension, width, kernel_size, **conv)]
        if lstm_layers:
            layers.append(LSTM(width, lstm_layers))
        for ratio in ratios:
            layers.append(_act(activation, width))
            layers.append(
                ConvTranspose1d(
                    width, width // 2, kernel_size=2 * ratio, stride=ratio, causal=causal,
                    trim_right_ratio=trim_right_ratio, norm=norm,
                )
            )  # fmt: skip
            width //= 2
            for j in range(n_residual_layers):
                layers.append(
                    ResidualBlock(width, residual_kernel_size, dilation_base**j, compress, activation, true_skip, conv)
                )
        layers.append(_act(activation, width))
        layers.append(Conv1d(width, channels, last_kernel_size, **conv))
        if final_activation == "tanh":
            layers.append(nn.Tanh())
        self.layers = nn.ModuleList(layers)

    def output_length(self, input_length: int) -> int:
        """Samples for ``input_length`` frames, derived layer by layer: ``T * hop_length``."""
        return self._through_layers(_checked_length(input_length))

    def forward(self, latents: Tensor) -> Tensor:
        """Latents ``[B, dimension, T]`` -> audio ``[B, channels, T * hop_length]`` (streaming: per chunk)."""
        if latents.dim() != 3 or latents.shape[1] != self.dimension:
            raise ValueError(f"expected latents [B, {self.dimension}, T]; got shape {tuple(latents.shape)}")
        if latents.shape[-1] == 0 and not self.is_streaming:
            raise ValueError("latents are empty: the decoder needs at least 1 frame")
        return _run(self.layers, latents).contiguous()


def _run(layers: nn.ModuleList, x: Tensor) -> Tensor:
    # On the CPU the stack runs time-major ([B, T, C] in memory; see voxtok.models.conv): faster convolutions.
    if x.device.type == "cpu":
        x = time_major(x)
    # Activations at this level only ever see a tensor made by the layer before them (the first layer is always
    # a convolution), so without autograd they may overwrite it.
    for layer in layers:
        x = apply_activation(layer, x, inplace=True) if isinstance(layer, (nn.ELU, Snake1d)) else layer(x)
    return x


def _act(name: str, channels: int) -> nn.Module:
    # The constructors' ``activation`` argument shadows ``conv.activation`` inside them.
    return activation(name, channels)
