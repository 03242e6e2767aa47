"""Causal Transformer (Mimi, CAT) and the all-Transformer CAT encoder / decoder (MOSS-Audio-Tokenizer).

``CausalTransformer`` is the block stack that Mimi puts after its SEANet encoder and before its SEANet decoder
(kyutai-labs/moshi ``moshi/modules/transformer.py``; transformers ``MimiTransformerModel``) and that CAT stacks
on waveform patches: pre-norm layers, rotary position embeddings, a causal mask with an optional context
window, layer scale, a GELU MLP without biases, and a KV cache for streaming.

Weight layout (for converters). Per layer ``layers.{i}``:

==========================  ============================================  =======================================
voxtok                      moshi / MOSS-Audio-Tokenizer                  transformers ``MimiTransformerModel``
==========================  ============================================  =======================================
``norm1``                   ``norm1``                                     ``input_layernorm``
``self_attn.in_proj``       ``self_attn.in_proj_weight`` (fused q, k, v)  ``q_proj``, ``k_proj``, ``v_proj``
``self_attn.out_proj``      ``self_attn.out_proj``                        ``o_proj``
``layer_scale_1.scale``     ``layer_scale_1.scale``                       ``self_attn_layer_scale.scale``
``norm2``                   ``norm2``                                     ``post_attention_layernorm``
``mlp.fc1``, ``mlp.fc2``    ``linear1``, ``linear2``                      ``mlp.fc1``, ``mlp.fc2``
``layer_scale_2.scale``     ``layer_scale_2.scale``                       ``mlp_layer_scale.scale``
==========================  ============================================  =======================================

q, k and v are one fused projection (one matmul instead of three, as in moshi). RoPE rotates *adjacent* pairs
of a head's channels (moshi's layout). transformers' Mimi rotates halves instead (``rotate_half``), so loading
its ``q_proj`` / ``k_proj`` needs each head's rows reordered: ``w.view(H, 2, hd // 2, D).transpose(1, 2)
.reshape(H * hd, D)`` (the inverse of transformers' own moshi converter); v needs nothing. The test suite
checks this mapping numerically against ``MimiTransformerModel``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.models.base import Decoder, Encoder, NamedConfigs, Stage, StreamingState

__all__ = ["CATDecoder", "CATEncoder", "CausalTransformer", "TransformerLayer"]

NORMS = ("layer_norm", "rms_norm")


def _make_norm(norm: str, dim: int) -> nn.Module:
    if norm == "layer_norm":
        return nn.LayerNorm(dim, eps=1e-5)
    if norm == "rms_norm":
        return nn.RMSNorm(dim, eps=1e-5)
    raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")


class LayerScale(nn.Module):
    """Per-channel residual scale (Touvron et al. 2021, https://arxiv.org/abs/2103.17239), on ``[..., D]``.

    Mimi and CAT start it at 0.01 so that each block begins close to the identity.
    """

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x


def rope_rotation(positions: Tensor, head_dim: int, max_period: float) -> Tensor:
    """Complex rotations ``[T, head_dim // 2]`` (``exp(i * position * freq_j)``) for ``positions`` ``[T]``.

    Frequency j is ``max_period ** (-2 j / head_dim)`` (Su et al. 2021, https://arxiv.org/abs/2104.09864).
    Computed in float32 whatever the model's dtype, as moshi does.
    """
    half = torch.arange(head_dim // 2, device=positions.device, dtype=torch.float32)
    freqs = torch.exp(half * (-math.log(max_period) * 2.0 / head_dim))
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate the adjacent channel pairs ``(2i, 2i + 1)`` of ``x`` ``[..., hd]`` by ``rotation`` (complex,
    broadcastable to ``[..., hd // 2]``): one complex multiply per pair."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


class MultiheadAttention(nn.Module):
    """Self-attention with a fused q/k/v projection and no biases (Mimi), on ``[B, T, D]``."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: Tensor,
        rotation: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        past: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` ``[B, T, D]`` -> ``([B, T, D], (keys, values))``; keys / values ``[B, H, T_past + T, hd]``.

        ``rotation``: RoPE rotations ``[T, hd // 2]`` (``rope_rotation``). ``mask`` ``[T, T_past + T]`` bool
        (True = may attend), or None with ``is_causal`` for the plain causal case.
        """
        b, t, _ = x.shape
        qkv = self.in_proj(x).view(b, t, 3, self.num_heads, self.head_dim)
        # q and k rotate together ([B, T, 2, H, hd], time-major so the rotation broadcasts without copies).
        q, k = apply_rope(qkv[:, :, :2], rotation[:, None, None]).permute(2, 0, 3, 1, 4)
        v = qkv[:, :, 2].transpose(1, 2)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, -1)), (k, v)


class MLP(nn.Module):
    """``fc2(act(fc1(x)))`` without biases, on ``[B, T, D]``; GELU is Mimi's ``gating="none"`` feed-forward."""

    def __init__(self, d_model: int, dim_feedforward: int, activation: Callable[[Tensor], Tensor] = F.gelu) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, dim_feedforward, bias=False)
        self.fc2 = nn.Linear(dim_feedforward, d_model, bias=False)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Pre-norm block: ``x + ls1 * attn(norm1(x))``, then ``x + ls2 * mlp(norm2(x))``, on ``[B, T, D]``."""

    def __init__(
        self, d_model: int, num_heads: int, dim_feedforward: int, layer_scale: float | None, norm: str
    ) -> None:
        super().__init__()
        self.norm1 = _make_norm(norm, d_model)
        self.self_attn = MultiheadAttention(d_model, num_heads)
        self.layer_scale_1 = LayerScale(d_model, layer_scale) if layer_scale is not None else nn.Identity()
        self.norm2 = _make_norm(norm, d_model)
        self.mlp = MLP(d_model, dim_feedforward)
        self.layer_scale_2 = LayerScale(d_model, layer_scale) if layer_scale is not None else nn.Identity()

    def forward(
        self,
        x: Tensor,
        rotation: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        past: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, kv = self.self_attn(self.norm1(x), rotation, mask, is_causal, past)
        x = x + self.layer_scale_1(h)
        x = x + self.layer_scale_2(self.mlp(self.norm2(x)))
        return x, kv


def _context_mask(q_pos: Tensor, k_pos: Tensor, context: int | None) -> Tensor:
    """``[Tq, Tk]`` bool, True where query position may see key position: causal, within ``context`` frames.

    A context of ``c`` lets a frame see itself and the ``c - 1`` frames before it (moshi's and transformers'
    sliding window both count this way).
    """
    delta = q_pos[:, None] - k_pos[None, :]
    allowed = delta >= 0
    if context is not None:
        allowed = allowed & (delta < context)
    return allowed


@dataclass
class KVCache(StreamingState):
    """A streaming ``CausalTransformer``'s state: the stream's batch size, the position of the next frame, and
    per layer the keys and values ``[B, heads, frames, head_dim]`` the next frames may attend to (None before
    the first chunk)."""

    batch_size: int
    offset: int = 0
    kv: list[tuple[Tensor, Tensor] | None] = field(default_factory=list)


class CausalTransformer(NamedConfigs, Stage):
    """Causal Transformer on latents ``[B, D_in, T]`` -> ``[B, D_out, T]`` (channels first; transposed inside).

    Pre-norm layers (LayerNorm or RMSNorm), RoPE, a causal mask limited to the last ``context`` frames, layer
    scale, a GELU MLP. ``input_dim`` / ``output_dim`` different from ``d_model`` add bias-free linear projections
    (moshi's ``ProjectedTransformer``). The default arguments are Mimi's transformer (8 layers, 8 heads,
    d_model 512, dim_feedforward 2048, context 250, layer scale 0.01, RoPE max period 10000).

    Streaming (``with t.streaming(batch_size):``): each call takes a chunk ``[B, D_in, t]`` of whole frames and
    returns ``[B, D_out, t]``; the state holds per-layer keys / values (trimmed to the last ``context - 1``
    frames when a context window is set) and the position offset. Concatenated outputs equal the offline output.

    Args:
        d_model: model width.
        num_heads: attention heads (``d_model`` must divide evenly; the head width must be even for RoPE).
        num_layers: number of layers.
        dim_feedforward: MLP hidden width.
        input_dim: input channels (None: ``d_model``, no projection).
        output_dim: output channels (None: ``d_model``, no projection).
        context: frames each frame may attend to, itself included (None: the whole past).
        layer_scale: initial layer-scale value (None: no layer scale).
        norm: ``"layer_norm"`` or ``"rms_norm"``.
        max_period: RoPE base period.
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        # Mimi (moshi `_transformer_kwargs`, transformers MimiConfig defaults).
        "mimi": dict(d_model=512, num_heads=8, num_layers=8, dim_feedforward=2048, context=250, layer_scale=0.01),
        # One stage of CAT small (see CATEncoder.CONFIGS["small"]).
        "cat-small": dict(d_model=512, num_heads=8, num_layers=4, dim_feedforward=2048, context=1000, layer_scale=0.01),
        "tiny": dict(d_model=32, num_heads=4, num_layers=2, dim_feedforward=64, context=8, layer_scale=0.1),
    }

    def __init__(
        self,
        d_model: int = 512,
        num_heads: int = 8,
        num_layers: int = 8,
        dim_feedforward: int = 2048,
        input_dim: int | None = None,
        output_dim: int | None = None,
        context: int | None = 250,
        layer_scale: float | None = 0.01,
        norm: str = "layer_norm",
        max_period: float = 10_000.0,
    ) -> None:
        super().__init__()
        if d_model <= 0 or num_heads <= 0 or d_model % num_heads:
            raise ValueError(f"d_model must be a positive multiple of num_heads; got {d_model} and {num_heads}")
        if (d_model // num_heads) % 2:
            raise ValueError(f"RoPE needs an even head width; got d_model / num_heads = {d_model // num_heads}")
        if num_layers < 0 or dim_feedforward <= 0:
            raise ValueError(f"need num_layers >= 0 and dim_feedforward > 0; got {num_layers}, {dim_feedforward}")
        if context is not None and context < 1:
            raise ValueError(f"context must be None or >= 1 frame; got {context}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.input_dim = input_dim or d_model
        self.output_dim = output_dim or d_model
        self.context = context
        self.max_period = float(max_period)
        self.hop_length = 1  # frames in, frames out
        self.input_proj = nn.Linear(self.input_dim, d_model, bias=False) if self.input_dim != d_model else None
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, num_heads, dim_feedforward, layer_scale, norm) for _ in range(num_layers)
        )
        self.output_proj = nn.Linear(d_model, self.output_dim, bias=False) if self.output_dim != d_model else None

    def output_length(self, input_length: int) -> int:
        """Frames out for ``input_length`` frames in (the same)."""
        return input_length

    def init_streaming_state(self, batch_size: int) -> KVCache:
        return KVCache(batch_size, 0, [None] * len(self.layers))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, D_in, T]`` -> ``[B, D_out, T]``; frame t sees only frames ``<= t`` (and ``> t - context``)."""
        if x.dim() != 3:
            raise ValueError(f"CausalTransformer takes [B, D, T] latents; got shape {tuple(x.shape)}")
        if x.shape[1] != self.input_dim:
            raise ValueError(f"CausalTransformer expects {self.input_dim} input channels; got {x.shape[1]}")
        state = self.streaming_state
        if state is not None and x.shape[0] != state.batch_size:
            raise ValueError(f"streaming was started for batch size {state.batch_size}; got {x.shape[0]}")
        t = x.shape[-1]
        if t == 0:
            return x.new_zeros(x.shape[0], self.output_dim, 0)

        h = x.transpose(1, 2)
        if self.input_proj is not None:
            h = self.input_proj(h)
        offset = state.offset if state is not None else 0
        positions = torch.arange(offset, offset + t, device=x.device)
        rotation = rope_rotation(positions, self.d_model // self.num_heads, self.max_period)

        if state is None:
            # Offline: the plain causal case goes to SDPA's own causal path (no mask tensor).
            mask = (
                None if self.context is None or self.context >= t else _context_mask(positions, positions, self.context)
            )
            for layer in self.layers:
                h, _ = layer(h, rotation, mask, is_causal=True)
        else:
            for i, layer in enumerate(self.layers):
                past = state.kv[i]
                past_len = 0 if past is None else past[0].shape[2]
                k_pos = torch.arange(offset - past_len, offset + t, device=x.device)
                mask = _context_mask(positions, k_pos, self.context)
                h, (k, v) = layer(h, rotation, mask, is_causal=False, past=past)
                if self.context is not None:
                    # Future frames (position >= offset + t) only ever see the last context - 1 of these.
                    start = max(0, k.shape[2] - (self.context - 1))
                    k, v = k[:, :, start:], v[:, :, start:]
                state.kv[i] = (k, v)
            state.offset = offset + t

        if self.output_proj is not None:
            h = self.output_proj(h)
        return h.transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------
# CAT: patches of waveform through causal Transformer stages with 2x frame merges (MOSS-Audio-Tokenizer)


def patchify(x: Tensor, patch: int) -> Tensor:
    """``[B, D, T * p]`` -> ``[B, D * p, T]``: ``patch`` adjacent frames become channels (channel ``d * p + j``).

    The channel order is MOSS-Audio-Tokenizer's ``PatchedPretransform.encode``, so its weights load unchanged.
    """
    b, d, n = x.shape
    return x.reshape(b, d, n // patch, patch).transpose(2, 3).reshape(b, d * patch, n // patch)


def unpatchify(x: Tensor, patch: int) -> Tensor:
    """``[B, D * p, T]`` -> ``[B, D, T * p]``, the inverse of ``patchify``."""
    b, dp, n = x.shape
    return x.reshape(b, dp // patch, patch, n).transpose(2, 3).reshape(b, dp // patch, n * patch)


def _per_stage(value: Any, n: int, name: str) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"{name} needs one entry per stage ({n}); got {len(values)}: {values}")
    return values


def _build_stages(
    input_dims: list[int],
    output_dims: list[int],
    d_model: int | list[int],
    num_heads: int | list[int],
    num_layers: int | list[int],
    dim_feedforward: int | list[int],
    contexts: list[int | None],
    layer_scale: float | None,
    norm: str,
    max_period: float,
) -> nn.ModuleList:
    n = len(input_dims)
    widths = _per_stage(d_model, n, "d_model")
    heads = _per_stage(num_heads, n, "num_heads")
    depths = _per_stage(num_layers, n, "num_layers")
    ffs = _per_stage(dim_feedforward, n, "dim_feedforward")
    return nn.ModuleList(
        CausalTransformer(
            d_model=widths[i],
            num_heads=heads[i],
            num_layers=depths[i],
            dim_feedforward=ffs[i],
            input_dim=input_dims[i],
            output_dim=output_dims[i],
            context=contexts[i],
            layer_scale=layer_scale,
            norm=norm,
            max_period=max_period,
        )
        for i in range(n)
    )


def _stage_contexts(context: int | None, levels: list[int]) -> list[int | None]:
    # `context` counts frames at the patch rate; a stage 2^level times slower sees the same duration.
    if context is None:
        return [None] * len(levels)
    if context < 1:
        raise ValueError(f"context must be None or >= 1 patch frame; got {context}")
    return [max(1, context >> level) for level in levels]


_CAT_CONFIGS: dict[str, dict[str, Any]] = {
    # MOSS-Audio-Tokenizer (24 kHz, 1.6 B parameters): stages at 100 / 50 / 25 / 12.5 Hz, 10 s context.
    "moss": dict(
        patch_size=240,
        d_model=[768, 768, 768, 1280],
        num_heads=[12, 12, 12, 20],
        num_layers=[12, 12, 12, 32],
        dim_feedforward=[3072, 3072, 3072, 5120],
        context=1000,
    ),
    # CAT small: the same four stages and hop (1920 samples, 12.5 Hz at 24 kHz), 512 wide and 4 layers deep.
    "small": dict(patch_size=240, d_model=512, num_heads=8, num_layers=4, dim_feedforward=2048, context=1000),
    "tiny": dict(patch_size=8, d_model=16, num_heads=2, num_layers=1, dim_feedforward=32, context=8),
}
_CAT_ENCODER_DIMS = {
    "moss": dict(stage_dims=[384, 384, 640], dimension=768),
    "small": dict(stage_dims=[256, 256, 256], dimension=512),
    "tiny": dict(stage_dims=[8], dimension=8),
}
_CAT_DECODER_DIMS = {
    "moss": dict(stage_dims=[1280, 768, 768], dimension=768),
    "small": dict(stage_dims=[512, 512, 512], dimension=512),
    "tiny": dict(stage_dims=[16], dimension=8),
}


class CATEncoder(NamedConfigs, Encoder):
    """CAT encoder: audio ``[B, C, S]`` -> latents ``[B, dimension, ceil(S / hop)]``, Transformers only.

    The waveform is cut into patches of ``patch_size`` samples (240 at 24 kHz -> 100 Hz), then ``n`` causal
    Transformer stages run with a 2x frame merge between consecutive stages (two adjacent frames become one frame
    of twice the channels; the next stage's input projection is the merge's linear map), as in
    MOSS-Audio-Tokenizer. Four stages give 12.5 Hz: ``hop_length = patch_size * 2 ** (n - 1)``.

    Input that is not a whole number of hops is zero-padded on the right (the model is causal, so the padding
    changes no earlier frame). While streaming, each chunk must be a whole number of hops (ValueError otherwise).

    Args:
        channels: audio channels C.
        patch_size: samples per patch.
        stage_dims: output width of every stage but the last (each is then doubled by the merge).
        dimension: output width of the last stage (the latent width D).
        d_model, num_heads, num_layers, dim_feedforward: per-stage lists, or one value for every stage.
        context: attention context in patch frames (a stage 2^k times slower gets ``context // 2**k``).
        layer_scale, norm, max_period: as in ``CausalTransformer``.
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {k: {**v, **_CAT_ENCODER_DIMS[k]} for k, v in _CAT_CONFIGS.items()}

    def __init__(
        self,
        channels: int = 1,
        patch_size: int = 240,
        stage_dims: list[int] | tuple[int, ...] = (256, 256, 256),
        dimension: int = 512,
        d_model: int | list[int] = 512,
        num_heads: int | list[int] = 8,
        num_layers: int | list[int] = 4,
        dim_feedforward: int | list[int] = 2048,
        context: int | None = 1000,
        layer_scale: float | None = 0.01,
        norm: str = "layer_norm",
        max_period: float = 10_000.0,
    ) -> None:
        super().__init__()
        if channels < 1 or patch_size < 1:
            raise ValueError(f"channels and patch_size must be >= 1; got {channels} and {patch_size}")
        stage_dims = list(stage_dims)
        n = len(stage_dims) + 1
        self.channels = channels
        self.patch_size = patch_size
        self.dimension = dimension
        self.hop_length = patch_size * 2 ** (n - 1)
        inputs = [channels * patch_size] + [2 * d for d in stage_dims]
        outputs = stage_dims + [dimension]
        contexts = _stage_contexts(context, list(range(n)))
        self.stages = _build_stages(
            inputs, outputs, d_model, num_heads, num_layers, dim_feedforward, contexts, layer_scale, norm, max_period
        )

    def output_length(self, input_length: int) -> int:
        """Frames for ``input_length`` samples: ``ceil(S / hop)``."""
        return -(-input_length // self.hop_length)

    def forward(self, audio: Tensor) -> Tensor:
        """``audio`` ``[B, C, S]`` -> ``[B, dimension, ceil(S / hop)]``."""
        if audio.dim() != 3:
            raise ValueError(f"CATEncoder takes audio [B, C, S]; got shape {tuple(audio.shape)}")
        if audio.shape[1] != self.channels:
            raise ValueError(f"CATEncoder expects {self.channels} audio channel(s); got {audio.shape[1]}")
        s = audio.shape[-1]
        if s % self.hop_length:
            if self.is_streaming:
                raise ValueError(
                    f"CATEncoder streams whole frames: a chunk must be a multiple of {self.hop_length} samples; got {s}"
                )
            audio = F.pad(audio, (0, self.output_length(s) * self.hop_length - s))
        x = patchify(audio, self.patch_size)
        for i, stage in enumerate(self.stages):
            if i:
                x = patchify(x, 2)
            x = stage(x)
        return x


class CATDecoder(NamedConfigs, Decoder):
    """CAT decoder, the mirror of ``CATEncoder``: latents ``[B, dimension, T]`` -> audio ``[B, C, T * hop]``.

    ``n`` causal Transformer stages with a 2x frame split after each stage but the last (one frame's channels
    become two frames of half the channels), then the last stage's ``C * patch_size`` channels are unpatchified
    into samples. Streaming takes chunks of whole latent frames.

    Args:
        channels: audio channels C.
        patch_size: samples per patch.
        stage_dims: output width of every stage but the last (each must be even: the split halves it).
        dimension: latent width D (the first stage's input).
        d_model, num_heads, num_layers, dim_feedforward: per-stage lists, or one value for every stage.
        context: attention context in patch frames (a stage 2^k times slower gets ``context // 2**k``).
        layer_scale, norm, max_period: as in ``CausalTransformer``.
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {k: {**v, **_CAT_DECODER_DIMS[k]} for k, v in _CAT_CONFIGS.items()}

    def __init__(
        self,
        channels: int = 1,
        patch_size: int = 240,
        stage_dims: list[int] | tuple[int, ...] = (512, 512, 512),
        dimension: int = 512,
        d_model: int | list[int] = 512,
        num_heads: int | list[int] = 8,
        num_layers: int | list[int] = 4,
        dim_feedforward: int | list[int] = 2048,
        context: int | None = 1000,
        layer_scale: float | None = 0.01,
        norm: str = "layer_norm",
        max_period: float = 10_000.0,
    ) -> None:
        super().__init__()
        if channels < 1 or patch_size < 1:
            raise ValueError(f"channels and patch_size must be >= 1; got {channels} and {patch_size}")
        stage_dims = list(stage_dims)
        if any(d % 2 for d in stage_dims):
            raise ValueError(f"CATDecoder stage_dims must be even (each 2x split halves them); got {stage_dims}")
        n = len(stage_dims) + 1
        self.channels = channels
        self.patch_size = patch_size
        self.dimension = dimension
        self.hop_length = patch_size * 2 ** (n - 1)
        inputs = [dimension] + [d // 2 for d in stage_dims]
        outputs = stage_dims + [channels * patch_size]
        contexts = _stage_contexts(context, list(range(n - 1, -1, -1)))
        self.stages = _build_stages(
            inputs, outputs, d_model, num_heads, num_layers, dim_feedforward, contexts, layer_scale, norm, max_period
        )

    def output_length(self, input_length: int) -> int:
        """Samples for ``input_length`` frames: ``T * hop``."""
        return input_length * self.hop_length

    def forward(self, latents: Tensor) -> Tensor:
        """``latents`` ``[B, dimension, T]`` -> audio ``[B, C, T * hop]``."""
        if latents.dim() != 3:
            raise ValueError(f"CATDecoder takes latents [B, D, T]; got shape {tuple(latents.shape)}")
        if latents.shape[1] != self.dimension:
            raise ValueError(f"CATDecoder expects {self.dimension} latent channels; got {latents.shape[1]}")
        x = latents
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = unpatchify(x, 2)
        return unpatchify(x, self.patch_size)
