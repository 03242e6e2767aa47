"""An encoder that reads log-magnitude STFT frames instead of waveform samples.

A waveform encoder (SEANet) spends most of its compute learning a filterbank at the sample rate; an STFT gives
one for free. ``STFTEncoder`` takes ``log |STFT|`` frames (one per ``stft_hop`` samples), runs ConvNeXt blocks at
that rate, steps down to the latent rate with one strided convolution, runs more ConvNeXt blocks there and
projects to the latent width. It is the encoder of the ``stft-fsq-50hz`` preset, whose decoder (Vocos) predicts
STFT frames in turn: both ends work in the spectral domain, which is what makes that codec train in minutes on
a CPU (docs/demo.md). The ConvNeXt block and the "same"-padded STFT are the Vocos decoder's
(``voxtok.models.vocos``), so both sides share one implementation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.audio import promote
from voxtok.models.base import Encoder, NamedConfigs
from voxtok.models.vocos import ConvNeXtBlock, VocosBackbone, stft_same

__all__ = ["STFTEncoder"]


class STFTEncoder(NamedConfigs, Encoder):
    """Audio ``[B, 1, S]`` -> latents ``[B, dimension, ceil(S / hop)]``, ``hop = stft_hop * stride``.

    ``log(max(|STFT|, log_floor))`` with a periodic Hann window of ``n_fft`` and "same" padding (one frame per
    ``stft_hop`` samples, ``models.vocos.stft_same``) -> Conv1d (``embed_kernel``) to ``dim`` -> LayerNorm ->
    ``frame_layers`` ConvNeXt blocks -> strided Conv1d (kernel ``2 * stride``) -> ``latent_layers`` ConvNeXt
    blocks -> LayerNorm -> Linear to ``dimension``.

    Lengths: the audio is zero-padded on the right to a multiple of ``hop`` (what ``Codec`` already does), so
    ``S`` samples give ``ceil(S / hop)`` frames for every ``S >= 1``. Not causal: a frame sees ``n_fft / 2``
    samples ahead through its STFT window and three frames ahead through each depthwise convolution, so it
    does not stream (inside ``streaming()`` it raises).

    Args:
        dimension: latent width D (the quantizer's input).
        n_fft: STFT size and window length (640 at 16 kHz: 40 ms).
        stft_hop: samples between STFT frames (160 at 16 kHz: 100 Hz).
        stride: STFT frames per latent frame (2: 100 Hz -> 50 Hz).
        dim: ConvNeXt width.
        intermediate_dim: ConvNeXt MLP width.
        frame_layers: ConvNeXt blocks at the STFT rate.
        latent_layers: ConvNeXt blocks at the latent rate.
        embed_kernel: kernel of the first convolution over the STFT frames (odd; 1 is a per-frame linear map, the
            cheapest: with ``n_fft // 2 + 1`` input channels this layer is a large share of the encoder's cost).
        layer_scale: ConvNeXt layer-scale init (None: ``1 / (frame_layers + latent_layers)``, as Vocos).
        log_floor: magnitude floor before the log (keeps silence finite).
        channels: audio channels (1).
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        # The stft-fsq-50hz preset's encoder (16 kHz, 50 Hz); sizes chosen by the study in docs/demo.md.
        # A magnitude floor of 1e-2 (about -60 dB below loud speech in a 640-sample window) makes digital silence and
        # a real recording's noise floor look alike to the encoder.
        "stft-50hz": dict(
            dimension=20, n_fft=640, stft_hop=160, stride=2, dim=256, intermediate_dim=768, frame_layers=2,
            latent_layers=2, log_floor=1e-2,
        ),
        "tiny": dict(
            dimension=8, n_fft=32, stft_hop=8, stride=2, dim=16, intermediate_dim=32, frame_layers=1, latent_layers=1
        ),
    }  # fmt: skip

    def __init__(
        self,
        dimension: int = 20,
        n_fft: int = 640,
        stft_hop: int = 160,
        stride: int = 2,
        dim: int = 256,
        intermediate_dim: int = 768,
        frame_layers: int = 2,
        latent_layers: int = 2,
        embed_kernel: int = 7,
        layer_scale: float | None = None,
        log_floor: float = 1e-5,
        channels: int = 1,
    ) -> None:
        super().__init__()
        for name, value in (("dimension", dimension), ("n_fft", n_fft), ("stft_hop", stft_hop), ("stride", stride),
                            ("dim", dim), ("intermediate_dim", intermediate_dim)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"STFTEncoder: {name} must be a positive int; got {value!r}")
        if stft_hop > n_fft:
            raise ValueError(f"STFTEncoder: stft_hop must be <= n_fft; got stft_hop={stft_hop}, n_fft={n_fft}")
        if isinstance(embed_kernel, bool) or not isinstance(embed_kernel, int) or embed_kernel < 1 \
                or embed_kernel % 2 == 0:
            raise ValueError(f"STFTEncoder: embed_kernel must be a positive odd int; got {embed_kernel!r}")
        if frame_layers < 0 or latent_layers < 0:
            raise ValueError(f"STFTEncoder: layer counts must be >= 0; got {frame_layers}, {latent_layers}")
        if channels != 1:
            raise ValueError(f"STFTEncoder reads mono audio; got channels={channels}")
        if log_floor <= 0:
            raise ValueError(f"STFTEncoder: log_floor must be positive; got {log_floor}")
        self.channels = channels
        self.dimension = dimension
        self.n_fft, self.stft_hop, self.stride = n_fft, stft_hop, stride
        self.hop_length = stft_hop * stride
        self.log_floor = float(log_floor)
        scale = layer_scale if layer_scale is not None else 1.0 / max(frame_layers + latent_layers, 1)
        self.embed = nn.Conv1d(n_fft // 2 + 1, dim, kernel_size=embed_kernel, padding=embed_kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.frame_blocks = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, scale, None) for _ in range(frame_layers)
        )
        # Kernel 2 * stride over `stride` padding (split as the odd sample on the left): L frames -> L / stride.
        self.downsample = nn.Conv1d(dim, dim, kernel_size=2 * stride, stride=stride) if stride > 1 else None
        self.latent_blocks = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, scale, None) for _ in range(latent_layers)
        )
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, dimension)
        self.apply(VocosBackbone._init_weights)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def output_length(self, input_length: int) -> int:
        """Frames for ``input_length`` samples: ``ceil(S / hop)``."""
        if input_length < 0:
            raise ValueError(f"input_length must be >= 0; got {input_length}")
        return -(-int(input_length) // self.hop_length)

    @property
    def lookahead_frames(self) -> int:
        """Latent frames after its own that a frame reads: in a padded batch, at most this many frames before an
        item's end can differ from encoding the item alone.

        The STFT window reaches ``ceil(right padding / stft_hop)`` frames ahead, the embedding
        ``embed_kernel // 2`` more, each ConvNeXt block at the STFT rate 3 more, the strided step ``stride // 2``
        more, each latent-rate block 3.
        """
        right = (self.n_fft - self.stft_hop) - (self.n_fft - self.stft_hop) // 2
        ahead = -(-right // self.stft_hop) + self.embed.kernel_size[0] // 2 + 3 * len(self.frame_blocks)
        ahead += self.stride // 2
        return -(-ahead // self.stride) + 3 * len(self.latent_blocks)

    def features(self, audio: Tensor) -> Tensor:
        """``log |STFT|`` of audio ``[B, 1, S]`` (S a multiple of the STFT hop): ``[B, n_fft // 2 + 1, S / hop]``."""
        x = audio[:, 0]
        # An input shorter than the reflect padding (a few samples) is extended with zeros first, as SEANet's
        # reflect-padded convolutions do.
        pad = (self.n_fft - self.stft_hop) // 2 + 1
        short = max(0, pad - x.shape[-1])
        if short:
            x = F.pad(x, (0, short))
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = stft_same(x.float(), self.n_fft, self.stft_hop, self.window.float())
        if short:
            spec = spec[..., : audio.shape[-1] // self.stft_hop]
        return spec.abs().clamp(min=self.log_floor).log().to(audio.dtype)

    def forward(self, audio: Tensor) -> Tensor:
        """Audio ``[B, 1, S]`` (``[B, S]`` / ``[S]`` promoted) -> latents ``[B, dimension, ceil(S / hop)]``."""
        if self.is_streaming:
            raise RuntimeError("STFTEncoder is not causal and cannot stream; encode whole signals")
        x = promote(audio)
        if x.shape[1] != self.channels:
            raise ValueError(f"STFTEncoder expects mono audio [B, 1, S]; got shape {tuple(x.shape)}")
        if x.shape[-1] == 0:
            raise ValueError("audio is empty: the encoder needs at least 1 sample")
        x = F.pad(x, (0, (-x.shape[-1]) % self.hop_length))
        h = self.embed(self.features(x))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        for block in self.frame_blocks:
            h = block(h)
        if self.downsample is not None:
            h = self.downsample(F.pad(h, ((self.stride + 1) // 2, self.stride // 2)))
        for block in self.latent_blocks:
            h = block(h)
        return self.proj(self.final_norm(h.transpose(1, 2))).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, stft_hop={self.stft_hop}, stride={self.stride}, dimension={self.dimension}"
