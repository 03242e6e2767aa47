"""Preset definitions for every codec family (registered on import by ``presets._load_families``).

One builder per family takes the knobs that differ between its sizes; each named preset (and its ``-tiny``
variant for tests) calls it. The part configurations come from the parts' own named tables
(``SEANetEncoder.CONFIGS``, ``VocosDecoder.CONFIGS``, ``CausalTransformer.CONFIGS``, ``CATEncoder.CONFIGS``), so
a reference size is written down once. Parameter counts beside each anchor's: docs/presets.md.
"""

from __future__ import annotations

import copy
from typing import Any

from voxtok.codecs.parts import part_class
from voxtok.codecs.presets import register_preset

Spec = dict[str, Any]


def _spec(cls: str, **args: Any) -> Spec:
    return {"class": cls, "args": args}


def _named(part: str, name: str, **overrides: Any) -> dict[str, Any]:
    """Named configuration ``name`` of the registered part class ``part`` (its ``CONFIGS`` table), with overrides.

    Classes resolve lazily through the part registry, so listing presets imports no model code.
    """
    return {**copy.deepcopy(dict(part_class(part).CONFIGS[name])), **overrides}


def _codec(sample_rate: int, encoder: Spec, quantizer: Spec, decoder: Spec, causal: bool) -> dict[str, Any]:
    return {"sample_rate": sample_rate, "channels": 1, "causal": causal,
            "encoder": encoder, "quantizer": quantizer, "decoder": decoder}


def _register(name: str, build: Any, **kw: Any) -> None:
    """Register ``name`` and ``name-tiny`` from one builder taking ``tiny``."""
    register_preset(name)(lambda: build(tiny=False, **kw))
    register_preset(f"{name}-tiny")(lambda: build(tiny=True, **kw))


# WavTokenizer's GroupNorm has 32 groups: at width 32 a one-frame input leaves one value per group, which
# GroupNorm refuses; 64 keeps two, so the tiny presets decode a single frame like the full-size ones.
_TINY_VOCOS_WIDTH = {"dim": 64, "intermediate_dim": 96}


# ------------------------------------------------------------------------------------------------------------
# WavTokenizer: SEANet encoder, one 4096-code VQ (k-means init, EMA, dead-code reset), Vocos decoder.


def _wavtokenizer(tiny: bool, hz: int) -> dict[str, Any]:
    if tiny:
        ratios = [2, 4] if hz == 75 else [3, 4]
        hop = ratios[0] * ratios[1]
        enc = _named("SEANetEncoder", "tiny", ratios=ratios)
        dec = _named("VocosDecoder", "tiny", hop_length=hop, n_fft=4 * hop, **_TINY_VOCOS_WIDTH)
        q = _spec("VectorQuantizer", dim=enc["dimension"], codebook_size=64)
    else:
        enc = _named("SEANetEncoder", f"wavtokenizer-{hz}hz")
        dec = _named("VocosDecoder", f"wavtokenizer-{hz}hz")
        q = _spec("VectorQuantizer", dim=enc["dimension"], codebook_size=4096)
    return _codec(24000, _spec("SEANetEncoder", **enc), q, _spec("VocosDecoder", **dec), causal=False)


_register("wavtokenizer-75hz", _wavtokenizer, hz=75)
_register("wavtokenizer-40hz", _wavtokenizer, hz=40)


# ------------------------------------------------------------------------------------------------------------
# DM-Codec: SpeechTokenizer-style SEANet (bidirectional LSTM), RVQ 8 x 1024; LM + SSL distillation on RVQ-1.


def _dmcodec(tiny: bool) -> dict[str, Any]:
    name = "tiny" if tiny else "dmcodec"
    enc = _named("SEANetEncoder", name, **({"lstm_bidirectional": True} if tiny else {}))
    dec = _named("SEANetDecoder", name)
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=8 if not tiny else 4,
              codebook_size=1024 if not tiny else 16)
    return _codec(16000, _spec("SEANetEncoder", **enc), q, _spec("SEANetDecoder", **dec), causal=False)


_register("dmcodec-50hz", _dmcodec)


# ------------------------------------------------------------------------------------------------------------
# CAT (MOSS-Audio-Tokenizer): causal Transformers on patches with 2x merges; RVQ of low-dimensional codes.


def _cat(tiny: bool) -> dict[str, Any]:
    size = "tiny" if tiny else "small"
    enc, dec = _named("CATEncoder", size), _named("CATDecoder", size)
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=4 if tiny else 32,
              codebook_size=16 if tiny else 1024, codebook_dim=4 if tiny else 8, quantizer_dropout=0.5)
    return _codec(24000, _spec("CATEncoder", **enc), q, _spec("CATDecoder", **dec), causal=True)


_register("cat-12.5hz", _cat)


# ------------------------------------------------------------------------------------------------------------
# Mimi: SEANet (25 Hz) + causal Transformer + strided conv to the frame rate; split RVQ (1 semantic + acoustic).
# LM-SPT-style variants change only the last frame-rate step: 25, 12.5 or 6.25 Hz from the same 25 Hz trunk.


def _mimi(tiny: bool, downsample: int = 2, num_quantizers: int = 8) -> dict[str, Any]:
    if tiny:
        seanet_enc = _named("SEANetEncoder", "tiny-causal", dimension=16, lstm_layers=0)
        seanet_dec = _named("SEANetDecoder", "tiny-causal", dimension=16, lstm_layers=0)
        transformer = _named("CausalTransformer", "tiny", d_model=16, num_heads=2)
        q_args = {"num_quantizers": 4, "codebook_size": 16, "codebook_dim": 4}
    else:
        seanet_enc, seanet_dec = _named("SEANetEncoder", "mimi"), _named("SEANetDecoder", "mimi")
        transformer = _named("CausalTransformer", "mimi")
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


_register("mimi-12.5hz", _mimi)
_register("lmspt-25hz", _mimi, downsample=1)
_register("lmspt-12.5hz", _mimi, downsample=2)
_register("lmspt-6.25hz", _mimi, downsample=4)


# ------------------------------------------------------------------------------------------------------------
# X-codec2: acoustic conv encoder + semantic features of a speech model, fused to 2048 channels; FSQ with
# 4^8 = 65536 codes; a Transformer backbone with an iSTFT head (``VocosTransformerDecoder``, which loads
# X-codec2's decoder weights). The semantic model is any transformers raw-waveform encoder: the preset uses a
# HuBERT-base-sized one with random weights (X-codec2 itself uses w2v-BERT 2.0, which takes filterbank features
# rather than waveforms; see docs/presets.md).

_TINY_HUBERT = {
    "model_type": "hubert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "intermediate_size": 32, "conv_dim": [8, 8], "conv_stride": [4, 2], "conv_kernel": [8, 4],
    "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2,
}  # fmt: skip
_HUBERT_BASE = {"model_type": "hubert"}  # transformers' defaults: 12 layers, 768 wide, hop 320 at 16 kHz


def _xcodec2(tiny: bool) -> dict[str, Any]:
    if tiny:
        acoustic = _named("SEANetEncoder", "tiny", ratios=[2, 4], lstm_layers=0)
        semantic = _spec("HFAudioEncoder", model=_TINY_HUBERT, layer=-1)
        dim, levels = 16, [4, 4]
        dec = _named("VocosTransformerDecoder", "tiny", dimension=dim, hop_length=8, n_fft=32, **_TINY_VOCOS_WIDTH)
    else:
        acoustic = _named("SEANetEncoder", "dac-16khz")
        semantic = _spec("HFAudioEncoder", model=_HUBERT_BASE, layer=-1)
        dim, levels = 2048, [4] * 8
        dec = _named("VocosTransformerDecoder", "xcodec2", dimension=dim)
    enc = _spec("ConcatEncoder", encoders=[_spec("SEANetEncoder", **acoustic), semantic], dimension=dim)
    q = _spec("FiniteScalarQuantizer", dim=dim, levels=levels)
    return _codec(16000, enc, q, _spec("VocosTransformerDecoder", **dec), causal=False)


_register("xcodec2-50hz", _xcodec2)


# ------------------------------------------------------------------------------------------------------------
# DAC: SEANet with Snake, factorised RVQ (8-dim l2-normalised codes, learned codebooks), 1024 codes.
# EnCodec: causal SEANet + LSTM, RVQ 1024 with EMA.


def _dac(tiny: bool, khz: int, num_quantizers: int) -> dict[str, Any]:
    name = "tiny-snake" if tiny else f"dac-{khz}khz"
    enc, dec = _named("SEANetEncoder", name), _named("SEANetDecoder", name)
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=4 if tiny else num_quantizers,
              codebook_size=16 if tiny else 1024, codebook_dim=4 if tiny else 8, metric="cosine", ema_decay=None,
              kmeans_init=False, dead_code_threshold=0.0, commitment_weight=0.25, quantizer_dropout=0.5)
    rate = {16: 16000, 24: 24000, 44: 44100}[khz]
    return _codec(rate, _spec("SEANetEncoder", **enc), q, _spec("SEANetDecoder", **dec), causal=False)


_register("dac-16khz", _dac, khz=16, num_quantizers=12)
_register("dac-24khz", _dac, khz=24, num_quantizers=32)
_register("dac-44khz", _dac, khz=44, num_quantizers=9)


def _encodec(tiny: bool) -> dict[str, Any]:
    if tiny:
        enc = _named("SEANetEncoder", "tiny-causal", pad_mode="reflect")
        dec = _named("SEANetDecoder", "tiny-causal", pad_mode="reflect")
    else:
        enc, dec = _named("SEANetEncoder", "encodec-24khz"), _named("SEANetDecoder", "encodec-24khz")
    q = _spec("ResidualVectorQuantizer", dim=enc["dimension"], num_quantizers=4 if tiny else 32,
              codebook_size=16 if tiny else 1024, quantizer_dropout=0.5)
    # Causal convolutions, but reflect padding at the left edge reads ahead, so no streaming (docs/presets.md).
    return _codec(24000, _spec("SEANetEncoder", **enc), q, _spec("SEANetDecoder", **dec), causal=False)


_register("encodec-24khz", _encodec)


# ------------------------------------------------------------------------------------------------------------
# stft-fsq-50hz: the demo codec, chosen for quality per CPU-minute (docs/demo.md). Log-magnitude STFT frames
# (100 Hz) through ConvNeXt blocks and a stride-2 step to 50 Hz; grouped FSQ (independent codebooks over groups of
# latent channels, no projection: the encoder outputs the code dims); a Vocos ConvNeXt decoder with an iSTFT head.


def _stft_fsq(tiny: bool) -> dict[str, Any]:
    if tiny:
        levels, groups = [5, 5], 2
        enc = _named("STFTEncoder", "tiny", dimension=len(levels) * groups)
        dec = _named("VocosDecoder", "tiny", dimension=len(levels) * groups, attention=False,
                     adanorm_num_embeddings=None)
    else:
        levels, groups = [8, 8, 8, 8, 8], 4  # 4 x 15 bits at 50 Hz: 3 kbps
        enc = _named("STFTEncoder", "stft-50hz", dimension=len(levels) * groups)
        dec = dict(dimension=len(levels) * groups, dim=256, intermediate_dim=768, num_layers=6, n_fft=1280,
                   hop_length=320, attention=False, adanorm_num_embeddings=None)
    q = _spec("FiniteScalarQuantizer", dim=len(levels) * groups, levels=levels, num_codebooks=groups)
    return _codec(16000, _spec("STFTEncoder", **enc), q, _spec("VocosDecoder", **dec), causal=False)


_register("stft-fsq-50hz", _stft_fsq)
