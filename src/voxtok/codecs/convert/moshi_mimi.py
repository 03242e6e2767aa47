"""moshi's Mimi safetensors (``tokenizer-*.safetensors``, as ``moshi.models.loaders.get_mimi`` loads) -> voxtok
``mimi-12.5hz`` layout (the same parts as ``hf-mimi``: ``EncoderChain`` / ``DecoderChain`` and
``SplitResidualVectorQuantizer.named("mimi", ...)``).

The file holds only tensors, so the sizes are moshi's Mimi (``loaders._seanet_kwargs`` / ``_transformer_kwargs``;
the same as transformers' ``MimiConfig`` defaults) and the codebook count is read from the file (32 for the
published checkpoint; moshi's LM uses the first 8). Mapping: ``model.N`` -> ``layers.N`` with moshi's nested
``conv.conv`` / ``convtr.convtr`` wrappers collapsed; ``in_projs.0`` (q / k / v already fused, RoPE already on
adjacent pairs, as voxtok) -> ``in_proj``; ``linear1`` / ``linear2`` -> ``mlp.fc1`` / ``fc2``;
``rvq_first`` / ``rvq_rest`` -> the semantic / acoustic groups; EMA codebooks as in ``hf_mimi``.
"""

from __future__ import annotations

import re
from pathlib import Path

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert._common import Source, load_strict
from voxtok.codecs.convert.hf_mimi import codebook, mimi_config, projection

MOSHI_MIMI = {  # moshi/models/loaders.py: _seanet_kwargs, _transformer_kwargs, _quantizer_kwargs
    "sample_rate": 24000, "dimension": 512, "n_filters": 64, "ratios_decoder_order": [8, 6, 5, 4],
    "n_residual_layers": 1, "kernel_size": 7, "last_kernel_size": 3, "residual_kernel_size": 3,
    "dilation_base": 2, "compress": 2, "true_skip": True, "num_layers": 8, "num_heads": 8,
    "dim_feedforward": 2048, "context": 250, "layer_scale": 0.01, "max_period": 10000.0, "downsample": 2,
    "num_semantic": 1, "codebook_size": 2048, "code_dim": 256,
}  # fmt: skip
# moshi renamed its codebook buffers once; its loader accepts both, and so does this converter.
_CODEBOOK_NAMES = (("embedding_sum", "cluster_usage", "_initialized"), ("embed_sum", "cluster_size", "inited"),
                   ("embed_avg", "cluster_size", "inited"))  # fmt: skip


def _seanet(src: Source, prefix: str, target: str) -> None:
    for name in [k for k in src.state if k.startswith(prefix)]:
        rest = re.sub(r"\b(conv|convtr)\.\1\.", "conv.", name[len(prefix) :])
        src.move(name, target + rest)


def _transformer(src: Source, prefix: str, target: str, num_layers: int) -> None:
    renames = {"self_attn.in_projs.0.weight": "self_attn.in_proj.weight",
               "self_attn.out_projs.0.weight": "self_attn.out_proj.weight",
               "linear1.weight": "mlp.fc1.weight", "linear2.weight": "mlp.fc2.weight",
               "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
               "norm2.bias": "norm2.bias", "layer_scale_1.scale": "layer_scale_1.scale",
               "layer_scale_2.scale": "layer_scale_2.scale"}  # fmt: skip
    for i in range(num_layers):
        for theirs, ours in renames.items():
            src.move(f"{prefix}.layers.{i}.{theirs}", f"{target}.layers.{i}.{ours}")


def _moshi_codebook(src: Source, prefix: str, target: str) -> None:
    for names in _CODEBOOK_NAMES:
        if src.has(f"{prefix}.{names[0]}"):
            codebook(src, prefix, target, names)
            return
    raise ValueError(f"{src.label}: missing tensor {prefix}.embedding_sum")


def convert_moshi_mimi(path: str | Path) -> Codec:
    """Load moshi's Mimi safetensors file as a voxtok ``Codec`` (all of the file's codebooks)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    label = str(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{label}: not a readable safetensors file ({e})") from e
    stages = {int(m.group(1)) for k in state if (m := re.match(r"quantizer\.rvq_rest\.vq\.layers\.(\d+)\.", k))}
    if not stages:
        raise ValueError(f"{label}: no quantizer.rvq_rest.vq.layers.* tensors: not a moshi Mimi checkpoint")
    n_rest = max(stages) + 1
    layers = 1 + max(int(m.group(1)) for k in state
                     if (m := re.match(r"encoder_transformer\.transformer\.layers\.(\d+)\.", k)))  # fmt: skip
    cfg = {**MOSHI_MIMI, "num_layers": layers, "num_quantizers": MOSHI_MIMI["num_semantic"] + n_rest}
    codec = Codec.from_config(mimi_config(**cfg))
    src = Source(state, label)
    _seanet(src, "encoder.model.", "encoder.stages.0.layers.")
    _transformer(src, "encoder_transformer.transformer", "encoder.stages.1", layers)
    src.move("downsample.conv.conv.conv.weight", "encoder.stages.2.conv.conv.weight")
    src.move("upsample.convtr.convtr.convtr.weight", "decoder.stages.0.conv.conv.weight")
    _transformer(src, "decoder_transformer.transformer", "decoder.stages.1", layers)
    _seanet(src, "decoder.model.", "decoder.stages.2.layers.")
    for group, count in (("first", cfg["num_semantic"]), ("rest", n_rest)):
        p, t = f"quantizer.rvq_{group}", f"quantizer.{'semantic' if group == 'first' else 'acoustic'}"
        projection(src, f"{p}.input_proj.weight", f"{t}.input_proj", codec.quantizer.dim)
        projection(src, f"{p}.output_proj.weight", f"{t}.output_proj", codec.quantizer.dim)
        for i in range(count):
            _moshi_codebook(src, f"{p}.vq.layers.{i}._codebook", f"{t}.stages.{i}")
    return load_strict(codec, src)
