"""Constructor arguments of parts: recorded when a part is built, and named reference sets of them.

``RecordsHParams`` (the idea behind Lightning's ``save_hyperparameters``): every class below it records the
keyword arguments its constructor was called with, however it was called (directly, through ``.named(...)`` or
from a config file), so a codec made of such parts can write them to ``config.json`` and be rebuilt. The record
holds the arguments as passed, not the defaults that were not passed (a config names what its writer chose).

``NamedConfigs``: ``Part.named(name, **overrides)`` builds a reference size from the class's ``CONFIGS`` table,
which is defined inside the class body; codec presets read the same tables, so each size is written down once.

This module sits at the bottom of the package (it imports only the standard library and torch), so quantizers
and models can both use it.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any, ClassVar, Self

from torch import nn

__all__ = ["HPARAMS_ATTR", "NamedConfigs", "RecordsHParams", "hparams_of", "record_hparams"]

#: Where the record lives in a module's ``__dict__`` (not a registered attribute: no state dict entry).
HPARAMS_ATTR = "_voxtok_hparams"


def _snapshot(value: Any) -> Any:
    """A copy of ``value`` that later changes by the constructor cannot reach; modules are kept by reference."""
    if isinstance(value, nn.Module):
        return value
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return copy.deepcopy(value)


def record_hparams(module: nn.Module, args: dict[str, Any]) -> None:
    """Attach ``args`` (constructor keyword arguments) to ``module``, replacing any earlier record."""
    module.__dict__[HPARAMS_ATTR] = _snapshot(dict(args))


def hparams_of(module: nn.Module) -> dict[str, Any] | None:
    """The recorded constructor arguments of ``module`` (a fresh copy), or None when nothing was recorded."""
    args = module.__dict__.get(HPARAMS_ATTR)
    return None if args is None else _snapshot(args)


@functools.cache
def _init_signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.__init__)


def _passed_args(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The constructor arguments of a ``cls(*args, **kwargs)`` call by name, or None when they do not bind
    (the constructor then raises its own error; ``copy`` and unpickling also create instances without them)."""
    signature = _init_signature(cls)
    try:
        bound = signature.bind(None, *args, **kwargs).arguments
    except TypeError:
        return None
    passed: dict[str, Any] = {}
    for name, value in list(bound.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            passed.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None  # nothing to name them by: such a part cannot be saved
        else:
            passed[name] = value
    return passed


class RecordsHParams:
    """Mixin for ``nn.Module`` parts: records the arguments each instance was constructed with (``hparams``).

    The record is taken in ``__new__``, which sees the arguments of the outermost constructor call (a subclass
    calling ``super().__init__`` with fixed options does not overwrite it), and leaves ``__init__``, its
    signature and its type hints untouched.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        passed = _passed_args(cls, args, kwargs)
        if passed is not None:
            record_hparams(self, passed)  # type: ignore[arg-type]
        return self

    @property
    def hparams(self) -> dict[str, Any]:
        """The keyword arguments this part was constructed with (as passed; defaults not passed are absent)."""
        return hparams_of(self) or {}  # type: ignore[arg-type]


class NamedConfigs:
    """``Part.named(name, **overrides)`` builds a reference configuration from the class's ``CONFIGS`` table.

    ``CONFIGS`` maps a name to constructor keyword arguments (JSON values), written in the class body; codec
    presets read the same tables. ``config_family`` names the table in error messages.
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {}
    config_family: ClassVar[str | None] = None

    @classmethod
    def named(cls, name: str, **overrides: Any) -> Self:
        """The configuration ``name`` of ``CONFIGS``, with ``overrides`` applied to its keyword arguments."""
        if name not in cls.CONFIGS:
            family = cls.config_family or cls.__name__
            raise ValueError(f"unknown {family} configuration {name!r}; known: {', '.join(cls.CONFIGS)}")
        return cls(**{**copy.deepcopy(cls.CONFIGS[name]), **overrides})
