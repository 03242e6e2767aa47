"""Named presets: each is a function returning a ``Codec.from_config`` dict. ``build(name)`` makes the codec
with random weights and says so; trained weights come from a ``save_pretrained`` directory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from voxtok.codecs.codec import FORMAT_VERSION, Codec

log = logging.getLogger("voxtok")

_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}


def register_preset(name: str) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator: register a function returning a codec config under ``name``."""

    def wrap(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return wrap


def presets() -> list[str]:
    """Names of every registered preset."""
    _load_families()
    return sorted(_PRESETS)


def preset_config(name: str) -> dict[str, Any]:
    """The config dict of preset ``name`` (with ``name`` and ``format_version`` filled in)."""
    _load_families()
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(sorted(_PRESETS))}")
    config = _PRESETS[name]()
    config.setdefault("name", name)
    config.setdefault("format_version", FORMAT_VERSION)
    return config


def build(name: str) -> Codec:
    """Build preset ``name`` with random weights (logged: these are not trained weights)."""
    codec = Codec.from_config(preset_config(name))
    n = sum(p.numel() for p in codec.parameters())
    log.warning("voxtok: built preset %s with RANDOM weights (%.2fM parameters); load trained weights from a "
                "save_pretrained directory", name, n / 1e6)
    return codec


def _load_families() -> None:
    # Families register themselves on import; imported here so `import voxtok.codecs` stays light.
    from voxtok.codecs import families  # noqa: F401
