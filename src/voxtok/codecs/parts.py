"""Part specs: how a codec's injected parts are described in ``config.json`` and rebuilt from it.

A spec is ``{"class": NAME, "args": {...}}`` where NAME is a key of the part registry (never an arbitrary import
path: a config file must not be able to import and run any code it likes) and ``args`` are the constructor's
keyword arguments as JSON values; specs nest (a chain's stages are specs). Every voxtok part records its
constructor arguments when it is built (``voxtok.hparams``), however it was built (directly, with ``.named()``,
or by ``build_part``), so ``spec_of`` can describe it: a codec made of registered parts can always be saved.

Names of variants that became options of a generic class are kept as aliases, so configs written before keep
loading: an alias builds a named configuration of its target class, and says how the old weight names map to the
target's (``legacy_renames``).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

from voxtok.hparams import hparams_of, record_hparams

__all__ = ["FORMAT_VERSION", "build_part", "legacy_renames", "part_class", "part_name", "part_names", "register_part",
           "spec_of"]

#: The format of a codec's ``config.json``; a config of a newer format is refused (``Codec.from_config``).
FORMAT_VERSION = 1

# Registry name -> "module:attribute" of the defining module. Imported lazily so `import voxtok.codecs` stays
# cheap (and a part needing transformers imports it only when it is built).
_REGISTRY: dict[str, str | type[nn.Module]] = {
    # quantizers
    "VectorQuantizer": "voxtok.quantizers.vq:VectorQuantizer",
    "ResidualVectorQuantizer": "voxtok.quantizers.rvq:ResidualVectorQuantizer",
    "SplitResidualVectorQuantizer": "voxtok.quantizers.rvq:SplitResidualVectorQuantizer",
    "FiniteScalarQuantizer": "voxtok.quantizers.fsq:FiniteScalarQuantizer",
    "ResidualFSQ": "voxtok.quantizers.fsq:ResidualFSQ",
    "IdentityQuantizer": "voxtok.quantizers.identity:IdentityQuantizer",
    # encoders
    "SEANetEncoder": "voxtok.models.seanet:SEANetEncoder",
    "CATEncoder": "voxtok.models.transformer:CATEncoder",
    "EncoderChain": "voxtok.models.chain:EncoderChain",
    "HFAudioEncoder": "voxtok.models.semantic:HFAudioEncoder",
    "ConcatEncoder": "voxtok.models.semantic:ConcatEncoder",
    "UnavailableEncoder": "voxtok.models.unavailable:UnavailableEncoder",
    "BigCodecEncoder": "voxtok.models.bigcodec:BigCodecEncoder",
    "XCodec2Encoder": "voxtok.models.xcodec2:XCodec2Encoder",
    "STFTEncoder": "voxtok.models.stft_encoder:STFTEncoder",
    # stages of chains
    "CausalTransformer": "voxtok.models.transformer:CausalTransformer",
    "FrameDownsample": "voxtok.models.chain:FrameDownsample",
    "FrameUpsample": "voxtok.models.chain:FrameUpsample",
    # decoders
    "SEANetDecoder": "voxtok.models.seanet:SEANetDecoder",
    "VocosDecoder": "voxtok.models.vocos:VocosDecoder",
    "VocosTransformerDecoder": "voxtok.models.vocos:VocosTransformerDecoder",
    "CATDecoder": "voxtok.models.transformer:CATDecoder",
    "DecoderChain": "voxtok.models.chain:DecoderChain",
}


@dataclass(frozen=True)
class Alias:
    """An old registry name: builds ``target.named(config, **args)``; ``renames`` map the old weight-name
    prefixes (relative to the part) to the target's."""

    target: str
    config: str
    renames: tuple[tuple[str, str], ...] = ()


_ALIASES: dict[str, Alias] = {
    "DACResidualVectorQuantizer": Alias("ResidualVectorQuantizer", "dac"),
    "MimiSplitResidualVectorQuantizer": Alias(
        "SplitResidualVectorQuantizer", "mimi", (("semantic.rvq.", "semantic."), ("acoustic.rvq.", "acoustic."))
    ),
    "XCodec2FiniteScalarQuantizer": Alias("FiniteScalarQuantizer", "xcodec2"),
}


def register_part(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` buildable from specs under ``name`` (for user-defined parts)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"register_part needs an nn.Module subclass; got {cls!r}")
    if name in _ALIASES:
        raise ValueError(f"{name!r} is a reserved name (an alias kept for old configs)")
    _REGISTRY[name] = cls


def part_names() -> list[str]:
    """Names that specs may use (aliases of old configs included)."""
    return sorted([*_REGISTRY, *_ALIASES])


def part_class(name: str) -> type[nn.Module]:
    """The class registered under ``name`` (imported on first use)."""
    if name in _ALIASES:
        name = _ALIASES[name].target
    if name not in _REGISTRY:
        raise ValueError(f"unknown part class {name!r}; known: {', '.join(part_names())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, attr = target.split(":")
        target = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = target
    return target


def part_name(cls: type) -> str | None:
    """The registry name of ``cls`` (exactly that class, not a subclass), or None when it is not registered."""
    where = f"{cls.__module__}:{cls.__qualname__}"
    for name, target in _REGISTRY.items():
        if target is cls or target == where:
            return name
    return None


def legacy_renames(spec: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """How the weight names of a part built from ``spec`` were spelled when ``spec`` was written, as
    ``(old prefix, new prefix)`` pairs relative to the part (empty unless ``spec`` names an alias)."""
    alias = _ALIASES.get(spec.get("class", "")) if isinstance(spec, dict) else None
    return alias.renames if alias is not None else ()


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
    """Build a part from ``{"class": NAME, "args": {...}}``.

    Args may hold specs themselves (a list of stages for ``EncoderChain``); they are built first. A registered
    class that does not record its constructor arguments (a plain ``nn.Module``) gets the spec's arguments
    recorded here, so it can be saved too.
    """
    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError(f"a part spec is {{'class': NAME, 'args': {{...}}}}; got {spec!r}")
    name = spec["class"]
    cls = part_class(name)
    args = {k: _build_nested(v) for k, v in spec.get("args", {}).items()}
    try:
        if name in _ALIASES:
            module = cls.named(_ALIASES[name].config, **args)  # type: ignore[attr-defined]
        else:
            module = cls(**args)
    except TypeError as e:
        raise ValueError(f"cannot build {name} from args {sorted(args)}: {e}") from e
    if hparams_of(module) is None:
        record_hparams(module, args)
    return module


def _spec_value(value: Any, where: str) -> Any:
    """A recorded argument as JSON: parts become specs, tuples lists; anything else JSON cannot hold is refused."""
    if isinstance(value, nn.Module):
        return spec_of(value, where)
    if isinstance(value, (list, tuple)):
        return [_spec_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where}: a dict with non-string keys cannot be written to config.json")
        return {k: _spec_value(v, f"{where}.{k}") for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"{where} is a {type(value).__name__}, which config.json cannot hold: build the part with JSON values "
        f"(numbers, strings, lists, dicts) or registered parts"
    )


def spec_of(module: nn.Module, role: str) -> dict[str, Any]:
    """The spec that rebuilds ``module``: its registry name and its recorded constructor arguments.

    Raises:
        ValueError: the class is not registered, records no constructor arguments (a plain ``nn.Module`` not built
            with ``build_part``), or was given an argument JSON cannot hold.
    """
    args = hparams_of(module)
    cls = type(module)
    if args is None:
        raise ValueError(
            f"the codec's {role} ({cls.__name__}) was not built with voxtok.codecs.build_part and records no "
            f"constructor arguments, so it cannot be saved; subclass a voxtok seam (Encoder, Decoder, Quantizer), "
            f"which records them, or build it with build_part({{'class': NAME, 'args': {{...}}}})"
        )
    name = part_name(cls)
    if name is None:
        raise ValueError(
            f"the codec's {role} ({cls.__module__}.{cls.__qualname__}) is not a registered part, so a config "
            f"cannot name it; register it with voxtok.codecs.register_part(NAME, {cls.__name__})"
        )
    return {"class": name, "args": {k: _spec_value(v, f"{role}.{k}") for k, v in args.items()}}
