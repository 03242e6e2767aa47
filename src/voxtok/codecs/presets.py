"""Named presets: each is a function returning a ``Codec.from_config`` dict.

The built-in presets are the explicit table ``voxtok.codecs.families.PRESETS``; ``register_preset`` adds a
user's own. This module only names configs; ``voxtok.codecs.loading.build`` / ``voxtok.load`` turn one into a
codec (random weights, logged); trained weights come from a ``save_pretrained`` directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxtok.codecs.parts import FORMAT_VERSION

__all__ = ["preset_config", "presets", "register_preset"]

_USER: dict[str, Callable[[], dict[str, Any]]] = {}


def _builtin() -> dict[str, Callable[[], dict[str, Any]]]:
    # The table is read on first use, so `import voxtok` does not import every model module.
    from voxtok.codecs.families import PRESETS

    return PRESETS


def register_preset(name: str) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator: register a function returning a codec config under ``name``."""

    def wrap(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in _builtin() or name in _USER:
            raise ValueError(f"preset {name!r} is already registered")
        _USER[name] = fn
        return fn

    return wrap


def presets() -> list[str]:
    """Names of every preset (built-in and registered)."""
    return sorted([*_builtin(), *_USER])


def preset_config(name: str) -> dict[str, Any]:
    """The config dict of preset ``name`` (with ``name`` and ``format_version`` filled in)."""
    fn = _builtin().get(name) or _USER.get(name)
    if fn is None:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(presets())}")
    config = fn()
    config.setdefault("name", name)
    config.setdefault("format_version", FORMAT_VERSION)
    return config
