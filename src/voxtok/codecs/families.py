"""Preset definitions for every codec family, and the table of them (``PRESETS``) that ``voxtok.codecs.presets``
reads.

One builder per family takes the knobs that differ between its sizes; each named preset (and its ``-tiny``
variant for tests) calls it. The part configurations come from the parts' own named tables, read here directly
(``SEANetEncoder.CONFIGS``, ``VocosDecoder.CONFIGS``, ``CausalTransformer.CONFIGS``, ``CATEncoder.CONFIGS``), so
a reference size is written down once. Parameter counts beside each anchor's: docs/presets.md.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

from voxtok.hparams import NamedConfigs
from voxtok.models.seanet import SEANetDecoder, SEANetEncoder
from voxtok.models.stft_encoder import STFTEncoder
from voxtok.models.transformer import CATDecoder, CATEncoder, CausalTransformer
from voxtok.models.vocos import VocosDecoder, VocosTransformerDecoder
from voxtok.models.xcodec2 import XCodec2Encoder
from voxtok.quantizers.fsq import FiniteScalarQuantizer

__all__ = ["PRESETS"]

Spec = dict[str, Any]


def _spec(cls: str, **args: Any) -> Spec:
    return {"class": cls, "args": args}


def _named(part: type[NamedConfigs], name: str, **overrides: Any) -> dict[str, Any]:
    """Named configuration ``name`` of ``part`` (its ``CONFIGS`` table), with overrides."""
    return {**copy.deepcopy(part.CONFIGS[name]), **overrides}


def _codec(sample_rate: int, encoder: Spec, quantizer: Spec, decoder: Spec, causal: bool) -> dict[str, Any]:
    return {"sample_rate": sample_rate, "channels": 1, "causal": causal,
            "encoder": encoder, "quantizer": quantizer, "decoder": decoder}


def _sizes(name: str, build: Callable[..., dict[str, Any]], **kw: Any) -> dict[str, Callable[[], dict[str, Any]]]:
    """``name`` and ``name-tiny`` from one builder taking ``tiny``."""
    return {name: partial(build, tiny=False, **kw), f"{name}-tiny": partial(build, tiny=True, **kw)}


# WavTokenizer's GroupNorm has 32 groups: at width 32 a one-frame input leaves one value per group, which
# GroupNorm refuses; 64 keeps two, so the tiny presets decode a single frame like the full-size ones.
_TINY_VOCOS_WIDTH = {"dim": 64, "intermediate_dim": 96}


# ------------------------------------------------------------------------------------------------------------
# WavTokenizer: SEANet encoder, one 4096-code VQ (k-means init, EMA, dead-code reset), Vocos decoder.


def _wavtokenizer(tiny: bool, hz: int) -> dict[str, Any]:
    if tiny:
        ratios = [2, 4] if hz == 75 else [3, 4]
        hop = ratios[0] * ratios[1]
        enc = _named(SEANetEncoder, "tiny", ratios=ratios)
        dec = _named(VocosDecoder, "tiny", hop_length=hop, n_fft=4 * hop, **_TINY_VOCOS_WIDTH)
        q = _spec("VectorQuantizer", dim=enc["dimension"], codebook_size=64)
    else:
        enc = _named(SEANetEncoder, f"wavtokenizer-{hz}hz")
        dec = _named(VocosDecoder, f"wavtokenizer-{hz}hz")
        q = _spec("VectorQuantizer", dim=enc["dimension"], codebook_size=4096)
    return _codec(24000, _spec("SEANetEncoder", **enc), q, _spec("VocosDecoder", **dec), causal=False)


# ------------------------------------------------------------------------------------------------------------
# DM-Codec: SpeechTokenizer-style SEANet (bidirectional LSTM), RVQ 8 x 1024; LM + SSL distillation on RVQ-1.


def _dmcodec(tiny: bool) -> dict[str, Any]:
    name = "tiny" if tiny else "dmcodec"
    enc = _named(SEANetEncoder, name, **({"lstm_bidirectional": True} if tiny else {}))
    dec = _named(SEANetDecoder, name)
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=8 if not tiny else 4,
              codebook_size=1024 if not tiny else 16)
    return _codec(16000, _spec("SEANetEncoder", **enc), q, _spec("SEANetDecoder", **dec), causal=False)


# ------------------------------------------------------------------------------------------------------------
# CAT (MOSS-Audio-Tokenizer): causal Transformers on patches with 2x merges; RVQ of low-dimensional codes.


def _cat(tiny: bool) -> dict[str, Any]:
    size = "tiny" if tiny else "small"
    enc, dec = _named(CATEncoder, size), _named(CATDecoder, size)
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=4 if tiny else 32,
              codebook_size=16 if tiny else 1024, codebook_dim=4 if tiny else 8, quantizer_dropout=0.5)
    return _codec(24000, _spec("CATEncoder", **enc), q, _spec("CATDecoder", **dec), causal=True)


# ------------------------------------------------------------------------------------------------------------
# Mimi: SEANet (25 Hz) + causal Transformer + strided conv to the frame rate; split RVQ (1 semantic + acoustic).
# LM-SPT-style variants change only the last frame-rate step: 25, 12.5 or 6.25 Hz from the same 25 Hz trunk.


def _mimi(tiny: bool, downsample: int = 2, num_quantizers: int = 8) -> dict[str, Any]:
    if tiny:
        seanet_enc = _named(SEANetEncoder, "tiny-causal", dimension=16, lstm_layers=0)
        seanet_dec = _named(SEANetDecoder, "tiny-causal", dimension=16, lstm_layers=0)
        transformer = _named(CausalTransformer, "tiny", d_model=16, num_heads=2)
        q_args = {"num_quantizers": 4, "codebook_size": 16, "codebook_dim": 4}
    else:
        seanet_enc, seanet_dec = _named(SEANetEncoder, "mimi"), _named(SEANetDecoder, "mimi")
        transformer = _named(CausalTransformer, "mimi")
        q_args = {"num_quantizers": num_quantizers, "codebook_size": 2048, "codebook_dim": 256}
    dim = seanet_enc["dimension"]
    enc_stages = [_spec("SEANetEncoder", **seanet_enc), _spec("CausalTransformer", **transformer)]
    dec_stages = [_spec("CausalTransformer", **transformer), _spec("SEANetDecoder", **seanet_dec)]
    if downsample > 1:
        enc_stages.append(_spec("FrameDownsample", dimension=dim, stride=downsample))
        dec_stages.insert(0, _spec("FrameUpsample", dimension=dim, stride=downsample))
    q = _spec("SplitResidualVectorQuantizer", dim=dim, num_semantic=1, quantizer_dropout=0.5, **q_args)
    return _codec(24000, _spec("EncoderChain", stages=enc_stages), q, _spec("DecoderChain", stages=dec_stages),
                  causal=True)


# ------------------------------------------------------------------------------------------------------------
# X-codec2: the published architecture, as `voxtok convert hf-xcodec2` builds it: ``XCodec2Encoder`` (BigCodec's
# anti-aliased conv stack + w2v-BERT 2.0 built by transformers from its config, random weights + adapter + fuse,
# 2048 channels), ``FiniteScalarQuantizer.named("xcodec2")`` (4^8 = 65536 codes, bounded twice) and the
# Transformer + iSTFT decoder. The tiny variant keeps hop 320 (the encoder's filterbank fixes it) with toy widths
# and a one-layer w2v-BERT-style model. Saved directories of the earlier SEANet + HuBERT preset keep loading as
# what they were (their config.json lists their parts): docs/presets.md.


def _xcodec2(tiny: bool) -> dict[str, Any]:
    enc = _named(XCodec2Encoder, "tiny" if tiny else "xcodec2")
    # Fused latents: the semantic model's width (transformers' default hidden_size, 1024, is w2v-BERT 2.0's) and
    # the acoustic one.
    dim = enc["semantic_model"].get("hidden_size", 1024) + enc["acoustic_dim"]
    if tiny:
        dec = _named(VocosTransformerDecoder, "tiny", dimension=dim, hop_length=320, n_fft=1280, num_layers=1,
                     **_TINY_VOCOS_WIDTH)  # fmt: skip
        levels = [4, 4]
    else:
        dec = _named(VocosTransformerDecoder, "xcodec2", dimension=dim)
        levels = [4] * 8
    q = _spec("FiniteScalarQuantizer", **_named(FiniteScalarQuantizer, "xcodec2", dim=dim, levels=levels))
    return _codec(16000, _spec("XCodec2Encoder", **enc), q, _spec("VocosTransformerDecoder", **dec), causal=False)


# ------------------------------------------------------------------------------------------------------------
# DAC: SEANet with Snake, factorised RVQ (8-dim l2-normalised codes, learned codebooks), 1024 codes.
# EnCodec: causal SEANet + LSTM, RVQ 1024 with EMA.


def _dac(tiny: bool, khz: int, num_quantizers: int) -> dict[str, Any]:
    name = "tiny-snake" if tiny else f"dac-{khz}khz"
    enc, dec = _named(SEANetEncoder, name), _named(SEANetDecoder, name)
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=4 if tiny else num_quantizers,
              codebook_size=16 if tiny else 1024, codebook_dim=4 if tiny else 8, metric="cosine", ema_decay=None,
              kmeans_init=False, dead_code_threshold=0.0, commitment_weight=0.25, quantizer_dropout=0.5)
    rate = {16: 16000, 24: 24000, 44: 44100}[khz]
    return _codec(rate, _spec("SEANetEncoder", **enc), q, _spec("SEANetDecoder", **dec), causal=False)


def _encodec(tiny: bool) -> dict[str, Any]:
    if tiny:
        enc = _named(SEANetEncoder, "tiny-causal", pad_mode="reflect")
        dec = _named(SEANetDecoder, "tiny-causal", pad_mode="reflect")
    else:
        enc, dec = _named(SEANetEncoder, "encodec-24khz"), _named(SEANetDecoder, "encodec-24khz")
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=4 if tiny else 32,
              codebook_size=16 if tiny else 1024, quantizer_dropout=0.5)
    # Causal convolutions, but reflect padding at the left edge reads ahead, so no streaming (docs/presets.md).
    return _codec(24000, _spec("SEANetEncoder", **enc), q, _spec("SEANetDecoder", **dec), causal=False)


# ------------------------------------------------------------------------------------------------------------
# stft-fsq-50hz: the demo codec, chosen for quality per CPU-minute (docs/demo.md). Log-magnitude STFT frames
# (100 Hz) through ConvNeXt blocks and a stride-2 step to 50 Hz; grouped FSQ (independent codebooks over groups of
# latent channels, no projection: the encoder outputs the code dims); a Vocos ConvNeXt decoder with an iSTFT head.


def _stft_fsq(tiny: bool) -> dict[str, Any]:
    if tiny:
        levels, groups = [5, 5], 2
        enc = _named(STFTEncoder, "tiny", dimension=len(levels) * groups)
        dec = _named(VocosDecoder, "tiny", dimension=len(levels) * groups, attention=False,
                     adanorm_num_embeddings=None)
    else:
        levels, groups = [8, 8, 8, 8, 8], 4  # 4 x 15 bits at 50 Hz: 3 kbps
        enc = _named(STFTEncoder, "stft-50hz", dimension=len(levels) * groups)
        dec = dict(dimension=len(levels) * groups, dim=256, intermediate_dim=768, num_layers=6, n_fft=1280,
                   hop_length=320, attention=False, adanorm_num_embeddings=None)
    q = _spec("FiniteScalarQuantizer", dim=len(levels) * groups, levels=levels, num_codebooks=groups)
    return _codec(16000, _spec("STFTEncoder", **enc), q, _spec("VocosDecoder", **dec), causal=False)


# ------------------------------------------------------------------------------------------------------------
# Every built-in preset, in one table (``voxtok.codecs.presets`` reads it; nothing registers on import).

PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    **_sizes("wavtokenizer-75hz", _wavtokenizer, hz=75),
    **_sizes("wavtokenizer-40hz", _wavtokenizer, hz=40),
    **_sizes("dmcodec-50hz", _dmcodec),
    **_sizes("cat-12.5hz", _cat),
    **_sizes("mimi-12.5hz", _mimi),
    **_sizes("lmspt-25hz", _mimi, downsample=1),
    **_sizes("lmspt-12.5hz", _mimi, downsample=2),
    **_sizes("lmspt-6.25hz", _mimi, downsample=4),
    **_sizes("xcodec2-50hz", _xcodec2),
    **_sizes("dac-16khz", _dac, khz=16, num_quantizers=12),
    **_sizes("dac-24khz", _dac, khz=24, num_quantizers=32),
    **_sizes("dac-44khz", _dac, khz=44, num_quantizers=9),
    **_sizes("encodec-24khz", _encodec),
    **_sizes("stft-fsq-50hz", _stft_fsq),
}
