"""Shared machinery of the converters: reading a source, taking its tensors by name, strict loading.

A converter turns a source state dict into voxtok names through a ``Source``: every tensor it needs is taken by
name (a missing one raises ``ValueError`` naming it), and ``finish`` refuses any tensor left untaken, so a
checkpoint of another size or variant never loads half-way. ``load_strict`` then checks the mapped tensors
against the codec's own state dict (missing, extra, wrong shape), naming the source tensor behind each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from voxtok.codecs.codec import Codec


class Source:
    """The tensors of one checkpoint, taken one by one by name.

    Args:
        state: name -> tensor of the source checkpoint.
        label: how error messages name the source (its path).
    """

    def __init__(self, state: dict[str, Tensor], label: str) -> None:
        self.state = dict(state)
        self.label = label
        self.out: dict[str, Tensor] = {}
        self.origin: dict[str, str] = {}  # voxtok name -> source name, for error messages

    def has(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str) -> Tensor:
        """Remove and return the source tensor ``name``; ``ValueError`` naming it when absent."""
        if name not in self.state:
            raise ValueError(f"{self.label}: missing tensor {name!r}")
        return self.state.pop(name)

    def put(self, target: str, value: Tensor, origin: str) -> None:
        """Record ``value`` as the voxtok tensor ``target`` (made from the source tensor ``origin``)."""
        self.out[target] = value
        self.origin[target] = origin

    def move(self, name: str, target: str) -> None:
        """Take ``name`` and record it unchanged as ``target``."""
        self.put(target, self.take(name), name)

    def move_prefix(self, prefix: str, target: str) -> None:
        """Move every tensor under ``prefix`` to the same suffix under ``target``."""
        names = [k for k in self.state if k.startswith(prefix)]
        if not names:
            raise ValueError(f"{self.label}: missing tensors under {prefix!r}")
        for k in names:
            self.move(k, target + k[len(prefix) :])

    def weight_norm(self, name: str, target: str) -> None:
        """A plain convolution weight ``name`` as weight-norm ``original0`` (g) / ``original1`` (v) at ``target``.

        ``g = |w|`` over every axis but the first and ``v = w``, so ``g * v / |v|`` is ``w`` to rounding.
        """
        w = self.take(name)
        dims = tuple(range(1, w.dim()))
        g = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
        self.put(f"{target}.parametrizations.weight.original0", g, name)
        self.put(f"{target}.parametrizations.weight.original1", w, name)

    def folded(self, prefix: str) -> Tensor:
        """The effective weight of ``prefix``: plain ``weight``, or weight norm (``weight_g`` / ``weight_v`` or
        ``parametrizations.weight.original0`` / ``original1``) folded as ``g * v / |v|`` (norm over all axes
        but the first)."""
        for g_name, v_name in (
            (f"{prefix}.weight_g", f"{prefix}.weight_v"),
            (f"{prefix}.parametrizations.weight.original0", f"{prefix}.parametrizations.weight.original1"),
        ):
            if g_name in self.state:
                g, v = self.take(g_name), self.take(v_name)
                dims = tuple(range(1, v.dim()))
                return g * v / torch.linalg.vector_norm(v, dim=dims, keepdim=True)
        return self.take(f"{prefix}.weight")

    def finish(self) -> dict[str, Tensor]:
        """The mapped tensors; ``ValueError`` naming any source tensor the converter did not use."""
        if self.state:
            left = sorted(self.state)
            raise ValueError(
                f"{self.label}: unexpected tensor(s) {left[:5]}{' ...' if len(left) > 5 else ''} "
                f"({len(left)} not used by the converter; is this checkpoint another variant?)"
            )
        return self.out


def rename_weight_norm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Old-style ``weight_g`` / ``weight_v`` names -> ``parametrizations.weight.original0`` / ``original1``."""
    out = {}
    for k, v in state.items():
        if k.endswith(".weight_g"):
            k = k[: -len("weight_g")] + "parametrizations.weight.original0"
        elif k.endswith(".weight_v"):
            k = k[: -len("weight_v")] + "parametrizations.weight.original1"
        out[k] = v
    return out


def read_hf_dir(path: str | Path, model_type: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``config.json`` and ``model.safetensors`` of a transformers ``save_pretrained`` directory."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise ValueError(f"{path}: missing {f.name} (expected a transformers save_pretrained directory with "
                             f"config.json and model.safetensors)")
    config = json.loads(cfg_file.read_text())
    if config.get("model_type") != model_type:
        raise ValueError(f"{cfg_file}: model_type is {config.get('model_type')!r}; this converter reads {model_type!r}")
    return config, load_file(str(weights))


def load_strict(codec: Codec, source: Source) -> Codec:
    """Load the source's mapped tensors into ``codec``: every tensor present, none extra, every shape equal.

    Returns the codec in eval mode. Errors name the voxtok tensor and the source tensor it came from.
    """
    mapped = source.finish()
    own = codec.state_dict()
    missing = [k for k in own if k not in mapped]
    extra = [k for k in mapped if k not in own]
    if missing:
        raise ValueError(f"{source.label}: the checkpoint has no tensor for voxtok's {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    if extra:
        raise ValueError(f"{source.label}: tensor(s) {[source.origin[k] for k in extra[:5]]} have no place in "
                         f"the voxtok codec (mapped to {extra[:5]})")
    for k, v in mapped.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{source.label}: tensor {source.origin[k]!r} has shape {tuple(v.shape)}; voxtok's "
                             f"{k} expects {tuple(own[k].shape)} (config and weights disagree)")
    codec.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=True)
    return codec.eval()


def require(config: dict[str, Any], key: str, expected: Any, label: str, why: str) -> None:
    """``ValueError`` when a source config option has a value voxtok does not represent."""
    value = config.get(key, expected)
    if value != expected:
        raise ValueError(f"{label}: {key}={value!r} is not supported ({why}); expected {expected!r}")
