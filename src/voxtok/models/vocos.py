"""Vocos decoder: a ConvNeXt backbone at the token rate and an inverse-STFT head (WavTokenizer, X-codec2).

Instead of upsampling with transposed convolutions, the decoder predicts one STFT frame per token and lets an
inverse STFT make the samples (Siuzdak 2023, https://arxiv.org/abs/2306.00814). WavTokenizer
(https://arxiv.org/abs/2408.16532, ``decoder/models.py``) adds a ``pos_net`` before the ConvNeXt stack: two
residual blocks, one self-attention block, two residual blocks and a GroupNorm.

Module names follow WavTokenizer's checkpoint (``backbone.embed``, ``backbone.pos_net.{0..5}``,
``backbone.norm``, ``backbone.convnext.{i}.{dwconv,norm,pwconv1,pwconv2,gamma}``, ``backbone.final_layer_norm``,
``head.out``), so its weights load by name. ``VocosTransformerDecoder`` is X-codec2's variant: the same head
behind a bidirectional Transformer backbone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.models.base import Decoder, NamedConfigs
from voxtok.models.transformer import MLP, MultiheadAttention

__all__ = ["ISTFTHead", "VocosBackbone", "VocosDecoder", "VocosTransformerDecoder", "istft_same", "stft_same"]


# ----------------------------------------------------------------------------------------------------------
# STFT with "same" padding: one frame per hop


def _same_padding(n_fft: int, hop_length: int) -> tuple[int, int]:
    # (n_fft - hop) samples are split between both ends so that S samples give S / hop frames.
    total = n_fft - hop_length
    return total // 2, total - total // 2


def stft_same(audio: Tensor, n_fft: int, hop_length: int, window: Tensor | None = None) -> Tensor:
    """Complex STFT with "same" padding: ``[B, S]`` -> ``[B, n_fft // 2 + 1, S // hop]``.

    The signal is reflect-padded by ``(n_fft - hop) / 2`` on each side and framed without centring, so a signal
    of ``T * hop`` samples gives exactly ``T`` frames (Vocos' ``padding="same"``). The window is a periodic Hann
    window of ``n_fft`` samples unless one is given. ``istft_same`` inverts it.
    """
    if audio.dim() != 2:
        raise ValueError(f"stft_same takes [B, S]; got shape {tuple(audio.shape)}")
    if window is None:
        window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    left, right = _same_padding(n_fft, hop_length)
    padded = F.pad(audio[:, None], (left, right), mode="reflect")[:, 0]
    return torch.stft(padded, n_fft, hop_length, window=window, center=False, return_complex=True)


def istft_same(spec: Tensor, n_fft: int, hop_length: int, window: Tensor | None = None) -> Tensor:
    """Inverse of ``stft_same``: complex ``[B, n_fft // 2 + 1, T]`` -> ``[B, T * hop]``.

    Why not ``torch.istft``: with ``center=False`` it checks the window's overlap-add envelope (NOLA) over the
    whole output, including the first and last samples where a Hann window's envelope is zero, and fails; with
    ``center=True`` it trims ``n_fft // 2`` per side, which belongs to a forward STFT giving ``1 + S // hop``
    frames, not one frame per token. So the overlap-add is done here (as Vocos' ``spectral_ops.ISTFT`` does):
    inverse FFT per frame, window, overlap-add with ``fold``, divide by the overlap-added squared window, and
    trim the "same" padding. After trimming the envelope is bounded away from zero (for ``n_fft = 4 * hop`` and
    a Hann window it is at least 0.5 of its peak), so the division is safe.
    """
    if spec.dim() != 3 or not spec.is_complex():
        raise ValueError(f"istft_same takes a complex [B, n_fft // 2 + 1, T]; got {spec.dtype} {tuple(spec.shape)}")
    if spec.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"istft_same expects {n_fft // 2 + 1} frequency bins for n_fft {n_fft}; got {spec.shape[1]}")
    b, _, t = spec.shape
    if window is None:
        window = torch.hann_window(n_fft, device=spec.device, dtype=spec.real.dtype)
    frames = torch.fft.irfft(spec, n=n_fft, dim=1, norm="backward") * window[None, :, None]
    total = (t - 1) * hop_length + n_fft
    fold = dict(output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop_length))
    audio = F.fold(frames, **fold).reshape(b, total)
    envelope = F.fold(window.square()[None, :, None].expand(1, n_fft, t), **fold).reshape(total)
    left, right = _same_padding(n_fft, hop_length)
    return audio[:, left : total - right] / envelope[left : total - right]


class ISTFTHead(nn.Module):
    """Features ``[B, dim, T]`` -> audio ``[B, 1, T * hop]`` through one STFT frame per token.

    A linear layer predicts ``n_fft // 2 + 1`` log-magnitudes and as many phases; magnitude is ``exp`` clipped
    at 1e2 (Vocos' guard against overflow early in training), the phase enters as ``cos`` / ``sin`` (no
    wrapping needed), and ``istft_same`` makes the samples. ``n_fft = 4 * hop`` with a Hann window of ``n_fft``
    (Vocos, WavTokenizer, X-codec2).

    Args:
        dim: input feature width.
        n_fft: FFT size and window length.
        hop_length: samples per token.
    """

    def __init__(self, dim: int = 768, n_fft: int = 1280, hop_length: int = 320) -> None:
        super().__init__()
        if not 0 < hop_length <= n_fft // 2:
            raise ValueError(f"hop_length must be in (0, n_fft / 2] so frames overlap; got {hop_length}, n_fft {n_fft}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, dim, T]`` -> audio ``[B, 1, T * hop]``."""
        mag, phase = self.out(x.transpose(1, 2)).transpose(1, 2).chunk(2, dim=1)
        # exp and the inverse FFT in float32 whatever the autocast dtype: FFTs have no bf16 kernels, and exp of
        # a bf16 log-magnitude loses the spectrum's fine structure.
        with torch.autocast(device_type=x.device.type, enabled=False):
            mag, phase = mag.float(), phase.float()
            mag = torch.exp(mag).clamp(max=1e2)
            spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
            return istft_same(spec, self.n_fft, self.hop_length, self.window.float())[:, None]


# ----------------------------------------------------------------------------------------------------------
# Backbone


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are looked up from a condition id (Vocos' bandwidth id), on ``[B, T, D]``."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale(condition)[:, None] + self.shift(condition)[:, None]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022) in 1D, on ``[B, D, T]``: depthwise conv 7, (Ada)LayerNorm, pointwise
    MLP ``D -> intermediate -> D`` with GELU, layer scale ``gamma``, residual."""

    def __init__(
        self, dim: int, intermediate_dim: int, layer_scale: float | None, adanorm_num_embeddings: int | None
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm_num_embeddings else nn.LayerNorm(dim, 1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale))) if layer_scale is not None else None

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.norm(h, condition) if isinstance(self.norm, AdaLayerNorm) else self.norm(h)
        h = self.pwconv2(F.gelu(self.pwconv1(h)))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


def _group_norm(dim: int) -> nn.GroupNorm:
    # WavTokenizer's `Normalize`: 32 groups, eps 1e-6.
    return nn.GroupNorm(num_groups=32, num_channels=dim, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """WavTokenizer's residual block on ``[B, D, T]``: (GroupNorm, swish, conv 3) twice, dropout before the
    second conv, residual."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _group_norm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.norm2 = _group_norm(dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class AttnBlock(nn.Module):
    """WavTokenizer's single-head self-attention over all frames (non-causal), 1x1-conv q/k/v/out, on
    ``[B, D, T]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = _group_norm(dim)
        self.q = nn.Conv1d(dim, dim, kernel_size=1)
        self.k = nn.Conv1d(dim, dim, kernel_size=1)
        self.v = nn.Conv1d(dim, dim, kernel_size=1)
        self.proj_out = nn.Conv1d(dim, dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = (proj(h).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)  # scale 1 / sqrt(D), as WavTokenizer
        return x + self.proj_out(h)


class VocosBackbone(nn.Module):
    """Latents ``[B, input_dim, T]`` -> features ``[B, dim, T]`` at the same rate.

    embed conv (kernel 7) -> optional ``pos_net`` (WavTokenizer: ResNet, ResNet, attention, ResNet, ResNet,
    GroupNorm) -> (Ada)LayerNorm -> ConvNeXt blocks -> final LayerNorm.
    """

    def __init__(
        self,
        input_dim: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale: float | None = None,
        adanorm_num_embeddings: int | None = None,
        attention: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if attention and dim % 32:
            raise ValueError(f"the attention pos_net uses GroupNorm(32): dim must be a multiple of 32; got {dim}")
        self.adanorm_num_embeddings = adanorm_num_embeddings
        self.embed = nn.Conv1d(input_dim, dim, kernel_size=7, padding=3)
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm_num_embeddings else nn.LayerNorm(dim, 1e-6)
        layer_scale = layer_scale if layer_scale is not None else 1.0 / max(num_layers, 1)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, layer_scale, adanorm_num_embeddings) for _ in range(num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)  # Vocos' init, before pos_net exists (WavTokenizer's order)
        self.pos_net = (
            nn.Sequential(
                ResnetBlock(dim, dropout),
                ResnetBlock(dim, dropout),
                AttnBlock(dim),
                ResnetBlock(dim, dropout),
                ResnetBlock(dim, dropout),
                _group_norm(dim),
            )
            if attention
            else None
        )

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """``x`` ``[B, input_dim, T]``, ``condition`` ``[B]`` int64 ids (AdaLayerNorm only) -> ``[B, dim, T]``."""
        x = self.embed(x)
        if self.pos_net is not None:
            x = self.pos_net(x)
        h = x.transpose(1, 2)
        h = self.norm(h, condition) if isinstance(self.norm, AdaLayerNorm) else self.norm(h)
        x = h.transpose(1, 2)
        for block in self.convnext:
            x = block(x, condition)
        return self.final_layer_norm(x.transpose(1, 2)).transpose(1, 2)


_WAVTOKENIZER_75HZ: dict[str, Any] = dict(
    dimension=512, dim=768, intermediate_dim=2304, num_layers=12, n_fft=1280, hop_length=320, attention=True,
    adanorm_num_embeddings=4,
)


class VocosDecoder(NamedConfigs, Decoder):
    """Vocos decoder: latents ``[B, dimension, T]`` -> audio ``[B, 1, T * hop]`` (exactly ``T * hop`` samples).

    ``VocosBackbone`` then ``ISTFTHead``. The default arguments are WavTokenizer's 24 kHz, 75 Hz decoder
    (dim 768, intermediate 2304, 12 ConvNeXt layers, attention pos_net, AdaLayerNorm over 4 bandwidth ids,
    hop 320, n_fft 1280). Named configurations in ``VocosDecoder.CONFIGS``.

    Not causal (depthwise convs look 3 frames ahead, the attention block sees the whole sequence, each output
    sample lies under the windows of the next two frames), so it does not stream: inside ``streaming()`` it
    raises.

    Args:
        dimension: latent width D.
        dim: backbone width.
        intermediate_dim: ConvNeXt MLP width.
        num_layers: ConvNeXt blocks.
        n_fft: FFT size (and window length); 4 x hop in every reference configuration.
        hop_length: samples per token.
        attention: add WavTokenizer's pos_net (residual blocks around one self-attention block).
        adanorm_num_embeddings: condition ids for AdaLayerNorm (None: plain LayerNorm).
        layer_scale: ConvNeXt layer-scale init (None: ``1 / num_layers``, as Vocos).
        dropout: dropout inside pos_net's residual blocks (WavTokenizer: 0.1).
    """

    channels = 1

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        # WavTokenizer `wavtokenizer_smalldata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml`.
        "wavtokenizer-75hz": _WAVTOKENIZER_75HZ,
        # The 40 tokens/s variant: same backbone, hop 600.
        "wavtokenizer-40hz": {**_WAVTOKENIZER_75HZ, "n_fft": 2400, "hop_length": 600},
        # X-codec2 (16 kHz, 50 Hz) sizes on the ConvNeXt backbone: a simplification, since X-codec2's backbone is
        # a Transformer (VocosTransformerDecoder.named("xcodec2") is the faithful one that loads its weights).
        "xcodec2": dict(
            dimension=1024,
            dim=1024,
            intermediate_dim=3072,
            num_layers=12,
            n_fft=1280,
            hop_length=320,
            attention=True,
            adanorm_num_embeddings=None,
        ),
        "tiny": dict(
            dimension=8,
            dim=32,
            intermediate_dim=48,
            num_layers=2,
            n_fft=64,
            hop_length=16,
            attention=True,
            adanorm_num_embeddings=2,
        ),
    }

    def __init__(
        self,
        dimension: int = 512,
        dim: int = 768,
        intermediate_dim: int = 2304,
        num_layers: int = 12,
        n_fft: int = 1280,
        hop_length: int = 320,
        attention: bool = True,
        adanorm_num_embeddings: int | None = 4,
        layer_scale: float | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.dimension = dimension
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.adanorm_num_embeddings = adanorm_num_embeddings
        self.backbone = VocosBackbone(
            dimension, dim, intermediate_dim, num_layers, layer_scale, adanorm_num_embeddings, attention, dropout
        )
        self.head = ISTFTHead(dim, n_fft, hop_length)

    def output_length(self, input_length: int) -> int:
        """Samples for ``input_length`` frames: ``T * hop``."""
        return input_length * self.hop_length

    def forward(self, latents: Tensor, condition: Tensor | int | None = None) -> Tensor:
        """``latents`` ``[B, dimension, T]`` -> audio ``[B, 1, T * hop]``.

        ``condition``: AdaLayerNorm id per item (``[B]`` int64, or one int for the batch); None means id 0
        (WavTokenizer decodes with bandwidth id 0). Ignored without AdaLayerNorm.
        """
        if self.is_streaming:
            raise RuntimeError("VocosDecoder is not causal and cannot stream; decode whole sequences")
        if latents.dim() != 3:
            raise ValueError(f"VocosDecoder takes latents [B, D, T]; got shape {tuple(latents.shape)}")
        if latents.shape[1] != self.dimension:
            raise ValueError(f"VocosDecoder expects {self.dimension} latent channels; got {latents.shape[1]}")
        b, _, t = latents.shape
        if t == 0:
            return latents.new_zeros(b, 1, 0)
        cond = None
        if self.adanorm_num_embeddings:
            cond = torch.as_tensor(0 if condition is None else condition, device=latents.device, dtype=torch.long)
            cond = cond.expand(b) if cond.dim() == 0 else cond
            if cond.shape != (b,):
                raise ValueError(f"condition must be one id or [B] = [{b}] ids; got shape {tuple(cond.shape)}")
            if cond.numel() and (cond.min() < 0 or cond.max() >= self.adanorm_num_embeddings):
                raise ValueError(
                    f"condition ids must be in [0, {self.adanorm_num_embeddings}); got {cond.min()}..{cond.max()}"
                )
        return self.head(self.backbone(latents, cond))


# ----------------------------------------------------------------------------------------------------------
# X-codec2: the Vocos head behind a bidirectional Transformer backbone


class BidirectionalLayer(nn.Module):
    """X-codec2's Transformer block on ``[B, T, D]``: RMSNorm, full (non-causal) attention without biases,
    RMSNorm, SiLU MLP without biases; pre-norm residuals, no layer scale.

    No position signal: X-codec2 applies RoPE along the *head* axis (a layout slip in the original that
    transformers' ``Xcodec2Decoder`` keeps), which rotates a head's queries and keys by the same angle and so leaves
    every attention score unchanged; the rotation is therefore left out, with identical outputs (tested).
    """

    def __init__(self, dim: int, num_heads: int, intermediate_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-6)
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.norm2 = nn.RMSNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, intermediate_dim, activation=F.silu)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        attn = self.self_attn
        q, k, v = attn.in_proj(self.norm1(x)).view(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
        x = x + attn.out_proj(h)
        return x + self.mlp(self.norm2(x))


class VocosTransformerDecoder(NamedConfigs, Decoder):
    """X-codec2's decoder: latents ``[B, dimension, T]`` -> audio ``[B, 1, T * hop]``.

    ``fc`` (when ``dimension != dim``) -> embed conv k7 -> 2 residual blocks (``prior_net``) -> bidirectional
    Transformer blocks -> 2 residual blocks (``post_net``) -> LayerNorm -> ``ISTFTHead`` (hop 320, n_fft 1280 at
    16 kHz). Names follow transformers' ``Xcodec2Decoder`` except the fused ``self_attn.in_proj`` (q, k, v
    concatenated; no row reordering is needed since no RoPE is applied), ``norm1`` / ``norm2`` for
    ``input_layernorm`` / ``post_attention_layernorm``, and ``head.out`` for ``head.linear``.

    Not causal; does not stream.

    Args:
        dimension: latent width D (X-codec2 hands the decoder 2048 = acoustic 1024 + semantic 1024 channels).
        dim: backbone width.
        num_heads: attention heads.
        intermediate_dim: MLP width.
        num_layers: Transformer blocks.
        n_fft: FFT size (4 x hop).
        hop_length: samples per token.
        dropout: dropout inside the residual blocks (X-codec2: 0.1).
    """

    channels = 1

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        # transformers Xcodec2Config defaults (HKUSTAudio/xcodec2).
        "xcodec2": dict(
            dimension=2048, dim=1024, num_heads=16, intermediate_dim=4096, num_layers=12, n_fft=1280, hop_length=320
        ),
        "tiny": dict(dimension=16, dim=32, num_heads=4, intermediate_dim=64, num_layers=2, n_fft=64, hop_length=16),
    }

    def __init__(
        self,
        dimension: int = 2048,
        dim: int = 1024,
        num_heads: int = 16,
        intermediate_dim: int = 4096,
        num_layers: int = 12,
        n_fft: int = 1280,
        hop_length: int = 320,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % 32 or dim % num_heads:
            raise ValueError(f"dim must be a multiple of 32 (GroupNorm) and of num_heads; got {dim}, {num_heads}")
        self.dimension = dimension
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.fc = nn.Linear(dimension, dim) if dimension != dim else None
        self.embed = nn.Conv1d(dim, dim, kernel_size=7, padding=3)
        self.prior_net = nn.ModuleList(ResnetBlock(dim, dropout) for _ in range(2))
        self.layers = nn.ModuleList(BidirectionalLayer(dim, num_heads, intermediate_dim) for _ in range(num_layers))
        self.post_net = nn.ModuleList(ResnetBlock(dim, dropout) for _ in range(2))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = ISTFTHead(dim, n_fft, hop_length)

    def output_length(self, input_length: int) -> int:
        """Samples for ``input_length`` frames: ``T * hop``."""
        return input_length * self.hop_length

    def forward(self, latents: Tensor) -> Tensor:
        """``latents`` ``[B, dimension, T]`` -> audio ``[B, 1, T * hop]``."""
        if self.is_streaming:
            raise RuntimeError("VocosTransformerDecoder is not causal and cannot stream; decode whole sequences")
        if latents.dim() != 3:
            raise ValueError(f"VocosTransformerDecoder takes latents [B, D, T]; got shape {tuple(latents.shape)}")
        if latents.shape[1] != self.dimension:
            raise ValueError(
                f"VocosTransformerDecoder expects {self.dimension} latent channels; got {latents.shape[1]}"
            )
        if latents.shape[-1] == 0:
            return latents.new_zeros(latents.shape[0], 1, 0)
        x = latents
        if self.fc is not None:
            x = self.fc(x.transpose(1, 2)).transpose(1, 2)
        x = self.embed(x)
        for block in self.prior_net:
            x = block(x)
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h)
        x = h.transpose(1, 2)
        for block in self.post_net:
            x = block(x)
        return self.head(self.norm(x.transpose(1, 2)).transpose(1, 2))
