"""Part specs: how a codec's injected parts are described in ``config.json`` and rebuilt from it.

A spec is ``{"class": NAME, "args": {...}}`` where NAME is a key of the part registry (never an arbitrary import
path: a config file must not be able to import and run any code it likes) and ``args`` are the constructor's
JSON-serialisable keyword arguments. Parts built through ``build_part`` remember their spec, so a codec made of
them can be saved and rebuilt with no outside knowledge.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from torch import nn

# Registry name -> "module:attribute". Imported lazily so `import voxtok.codecs` stays cheap.
_REGISTRY: dict[str, str | type[nn.Module]] = {
    # quantizers
    "VectorQuantizer": "voxtok.quantizers:VectorQuantizer",
    "ResidualVectorQuantizer": "voxtok.quantizers:ResidualVectorQuantizer",
    "SplitResidualVectorQuantizer": "voxtok.quantizers:SplitResidualVectorQuantizer",
    "FiniteScalarQuantizer": "voxtok.quantizers:FiniteScalarQuantizer",
    "ResidualFSQ": "voxtok.quantizers:ResidualFSQ",
    "IdentityQuantizer": "voxtok.quantizers:IdentityQuantizer",
    "DACResidualVectorQuantizer": "voxtok.models.dac_quantizer:DACResidualVectorQuantizer",
    "MimiSplitResidualVectorQuantizer": "voxtok.models.mimi_quantizer:MimiSplitResidualVectorQuantizer",
    "XCodec2FiniteScalarQuantizer": "voxtok.models.xcodec2:XCodec2FiniteScalarQuantizer",
    # encoders / decoders
    "SEANetEncoder": "voxtok.models.seanet:SEANetEncoder",
    "SEANetDecoder": "voxtok.models.seanet:SEANetDecoder",
    "CausalTransformer": "voxtok.models.transformer:CausalTransformer",
    "VocosDecoder": "voxtok.models.vocos:VocosDecoder",
    "VocosTransformerDecoder": "voxtok.models.vocos:VocosTransformerDecoder",
    "CATEncoder": "voxtok.models.transformer:CATEncoder",
    "CATDecoder": "voxtok.models.transformer:CATDecoder",
    "EncoderChain": "voxtok.models.chain:EncoderChain",
    "DecoderChain": "voxtok.models.chain:DecoderChain",
    "FrameDownsample": "voxtok.models.chain:FrameDownsample",
    "FrameUpsample": "voxtok.models.chain:FrameUpsample",
    "HFAudioEncoder": "voxtok.models.semantic:HFAudioEncoder",
    "ConcatEncoder": "voxtok.models.semantic:ConcatEncoder",
    "UnavailableEncoder": "voxtok.models.unavailable:UnavailableEncoder",
    "BigCodecEncoder": "voxtok.models.bigcodec:BigCodecEncoder",
    "XCodec2Encoder": "voxtok.models.xcodec2:XCodec2Encoder",
    "STFTEncoder": "voxtok.models.stft_encoder:STFTEncoder",
}

SPEC_ATTR = "voxtok_spec"


def register_part(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` buildable from specs under ``name`` (for user-defined parts)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"register_part needs an nn.Module subclass; got {cls!r}")
    _REGISTRY[name] = cls


def part_names() -> list[str]:
    """Names that specs may use."""
    return sorted(_REGISTRY)


def part_class(name: str) -> type[nn.Module]:
    """The class registered under ``name`` (imported on first use)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown part class {name!r}; known: {', '.join(part_names())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, attr = target.split(":")
        target = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = target
    return target


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and set(value) <= {"class", "args"} and "class" in value


def _build_nested(value: Any) -> Any:
    """Specs inside args (a chain's stages) become modules; everything else is passed as it is."""
    if _is_spec(value):
        return build_part(value)
    if isinstance(value, list) and value and all(_is_spec(v) for v in value):
        return [build_part(v) for v in value]
    return copy.deepcopy(value)


def build_part(spec: dict[str, Any]) -> nn.Module:
    """Build a part from ``{"class": NAME, "args": {...}}`` and remember the spec on the module.

    Args may hold specs themselves (a list of stages for ``EncoderChain``); they are built first.
    """
    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError(f"a part spec is {{'class': NAME, 'args': {{...}}}}; got {spec!r}")
    cls = part_class(spec["class"])
    args = {k: _build_nested(v) for k, v in spec.get("args", {}).items()}
    try:
        module = cls(**args)
    except TypeError as e:
        raise ValueError(f"cannot build {spec['class']} from args {sorted(args)}: {e}") from e
    setattr(module, SPEC_ATTR, {"class": spec["class"], "args": copy.deepcopy(spec.get("args", {}))})
    return module


def spec_of(module: nn.Module, role: str) -> dict[str, Any]:
    """The spec a part was built from; a part built some other way cannot be saved."""
    spec = getattr(module, SPEC_ATTR, None)
    if spec is None:
        raise ValueError(
            f"the codec's {role} ({type(module).__name__}) was not built with voxtok.codecs.build_part, so its "
            f"constructor arguments are unknown and it cannot be saved; build it with "
            f"build_part({{'class': NAME, 'args': {{...}}}}) (register_part for your own classes)"
        )
    return copy.deepcopy(spec)
