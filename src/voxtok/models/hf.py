"""Hugging Face transformers models in one place: loading (no download, ever), freezing, hidden-state layer
selection, and switching off training-time augmentation.

Used by the semantic encoders (``semantic.HFAudioEncoder``, X-codec2's w2v-BERT path) and by the distillation
losses' teachers. transformers is imported only when a model is built or loaded.

A model source is one of:

- a config dict with ``model_type`` (e.g. ``{"model_type": "hubert", "num_hidden_layers": 2}``): random weights;
- a directory written by transformers' ``save_pretrained``;
- a model id already in the Hugging Face cache (read with ``local_files_only=True``);
- an ``nn.Module`` built by the caller (``load_pretrained`` only).

Hidden states are counted as transformers returns them with ``output_hidden_states=True``: index 0 is the input to
the first layer (embeddings / feature projection), then one per layer, so a model of N layers has N + 1. A layer
choice is an index (negative from the end), a list of indices (averaged), or ``"average"`` (all of them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "Layer",
    "ModelSource",
    "build_model",
    "check_layer",
    "disable_augmentation",
    "feature_extractor_settings",
    "freeze",
    "hidden_size",
    "layer_key",
    "load_feature_extractor",
    "load_pretrained",
    "num_hidden_states",
    "select_layer",
]

Layer = int | Sequence[int] | Literal["average"]
ModelSource = dict[str, Any] | str | os.PathLike

# Bookkeeping entries of a saved config (``_name_or_path``, ``transformers_version``) are not model fields.
_BOOKKEEPING = ("transformers_version",)


def _config_model(config: dict[str, Any]) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    kwargs = {k: v for k, v in config.items() if not k.startswith("_") and k not in _BOOKKEEPING}
    model_type = kwargs.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"a model config dict needs 'model_type' (e.g. 'hubert'); got keys {sorted(config)}")
    return AutoModel.from_config(AutoConfig.for_model(model_type, **kwargs))


def _looks_like_path(name: str) -> bool:
    path = Path(name).expanduser()
    return path.is_absolute() or name.startswith((".", "~")) or path.exists()


def _not_local(name: str, err: Exception) -> ValueError:
    return ValueError(
        f"model {name!r} is not available locally, and voxtok never downloads models. Download it once "
        f"(e.g. `huggingface-cli download {name} --local-dir DIR`, or `huggingface_hub.snapshot_download({name!r})` "
        "to fill the Hugging Face cache) and pass DIR or the id; or pass a config dict or an nn.Module you built. "
        f"(transformers said: {err})"
    )


def load_pretrained(source: ModelSource | nn.Module, tokenizer: bool = False) -> tuple[nn.Module, Any, str]:
    """``(model, tokenizer or None, name)`` from a config dict, a directory, a cached id or a built module.

    Raises:
        ValueError: a directory that does not exist or does not load (the message says to pass a directory written
            by transformers' ``save_pretrained``), or an id that is not in the local cache (the message says how to
            put it there).
    """
    if isinstance(source, nn.Module):
        cfg = getattr(source, "config", None)
        name = getattr(cfg, "_name_or_path", "") or type(source).__name__
        return source, None, str(name)
    if isinstance(source, dict):
        return _config_model(source), None, str(source.get("model_type"))
    from transformers import AutoModel, AutoTokenizer

    name = str(source)
    path = Path(name).expanduser()
    if _looks_like_path(name) and not path.is_dir():
        raise ValueError(
            f"model directory {str(path)!r} does not exist; pass a directory written by transformers' "
            f"save_pretrained, or a config dict such as {{'model_type': 'hubert', 'num_hidden_layers': 12}}"
        )
    where = str(path) if path.is_dir() else name
    try:
        model = AutoModel.from_pretrained(where, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True) if tokenizer else None
    except (OSError, ValueError) as e:
        if path.is_dir():
            raise ValueError(f"model directory {where!r} could not be loaded: {e}") from e
        raise _not_local(name, e) from e
    return model, tok, name


def build_model(source: ModelSource) -> nn.Module:
    """A transformers model from a config dict (random weights), a local directory or a cached id (no download)."""
    return load_pretrained(source)[0]


def feature_extractor_settings(source: ModelSource | nn.Module) -> dict[str, Any]:
    """The saved feature-extractor settings (``sampling_rate``, ``do_normalize``, ...) of a model source, read as
    plain JSON from a directory's ``preprocessor_config.json``; ``{}`` when there are none."""
    if isinstance(source, (nn.Module, dict)):
        return {}
    path = Path(str(source)).expanduser()
    if path.is_dir():
        f = path / "preprocessor_config.json"
        return json.loads(f.read_text()) if f.is_file() else {}
    try:
        from transformers import AutoFeatureExtractor

        return AutoFeatureExtractor.from_pretrained(str(source), local_files_only=True).to_dict()
    except (OSError, ValueError):
        return {}


def load_feature_extractor(source: ModelSource | nn.Module) -> Any:
    """The transformers feature extractor saved with a model source, or None (built modules and dicts have none)."""
    if isinstance(source, (nn.Module, dict)):
        return None
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(str(Path(str(source)).expanduser()), local_files_only=True)
    except (OSError, ValueError):
        return None


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout) and no gradients, in place. A part holding a frozen model calls it again from its
    ``train()``, so the model stays in eval mode whatever mode the part is put in. Returns ``model``."""
    model.eval()
    model.requires_grad_(False)
    return model


def disable_augmentation(model: nn.Module) -> nn.Module:
    """Switch off training-time input augmentation (wav2vec2-family SpecAugment masking, on by default in
    training mode), which would corrupt what a codec encodes or a teacher targets. In place; returns ``model``."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "apply_spec_augment"):
        config.apply_spec_augment = False
    return model


def num_hidden_states(model: nn.Module) -> int | None:
    """How many hidden states the model returns (layers + 1), or None when its config does not say."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return None if n is None else int(n) + 1


def check_layer(layer: Layer, count: int | None) -> Layer:
    """``layer`` validated against ``count`` hidden states (see the module docstring); returned unchanged."""
    if layer == "average":
        return layer
    if isinstance(layer, str):
        raise ValueError(f"layer must be an int, a list of ints or 'average'; got {layer!r}")
    layers = [layer] if isinstance(layer, int) else list(layer)
    if not layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ValueError(f"layer must be an int, a non-empty list of ints or 'average'; got {layer!r}")
    if count is not None:
        bad = [i for i in layers if not -count <= i < count]
        if bad:
            raise ValueError(f"layer must be in [-{count}, {count - 1}]: layer(s) {bad} out of range (the model "
                             f"has {count} hidden states, 0 .. {count - 1})")  # fmt: skip
    return layer


def select_layer(hidden_states: Sequence[Tensor], layer: Layer) -> Tensor:
    """Pick or average hidden states ``[B, T, H]`` (``"average"``: all of them, DM-Codec's 'avg')."""
    if layer == "average":
        return torch.stack(list(hidden_states)).mean(0)
    if isinstance(layer, int):
        return hidden_states[layer]
    return torch.stack([hidden_states[i] for i in layer]).mean(0)


def layer_key(layer: Layer) -> str:
    """The layer choice as a string (``"-1"``, ``"3,4"``, ``"average"``), as feature caches store it."""
    if isinstance(layer, str):
        return layer
    return ",".join(str(i) for i in ([layer] if isinstance(layer, int) else layer))


def hidden_size(model: nn.Module, expected: int | None = None) -> int:
    """The model's hidden width (``config.hidden_size``), checked against ``expected`` when both are known."""
    cfg_dim = getattr(getattr(model, "config", None), "hidden_size", None)
    if cfg_dim is not None and expected is not None and int(cfg_dim) != int(expected):
        raise ValueError(f"teacher_dim={expected} but the model's config has hidden_size={cfg_dim}")
    dim = expected if expected is not None else cfg_dim
    if dim is None:
        raise ValueError("the model has no config.hidden_size; pass its width (teacher_dim)")
    return int(dim)
