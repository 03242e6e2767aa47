"""``load`` (what ``voxtok.load`` is): a preset name or a saved directory -> ``Codec``; ``build``: a preset by name.

``Codec.from_pretrained`` reads a directory and knows nothing of presets; deciding between the two happens here,
above both, so neither module imports the other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from voxtok.codecs.codec import Codec
from voxtok.codecs.presets import preset_config, presets

__all__ = ["build", "load"]

log = logging.getLogger("voxtok")


def build(name: str) -> Codec:
    """Build preset ``name`` with random weights (logged: these are not trained weights)."""
    codec = Codec.from_config(preset_config(name))
    n = sum(p.numel() for p in codec.parameters())
    log.warning("voxtok: built preset %s with RANDOM weights (%.2fM parameters); load trained weights from a "
                "save_pretrained directory", name, n / 1e6)
    return codec


def load(name_or_path: str | Path) -> Codec:
    """A codec from a ``save_pretrained`` directory (trained weights, eval mode) or a preset name (random
    weights, logged).

    Raises:
        ValueError: ``name_or_path`` is neither an existing directory nor a preset name; or the directory's
            ``config.json`` / ``model.safetensors`` are missing, unreadable or do not fit each other.
    """
    if Path(name_or_path).is_dir():
        return Codec.from_pretrained(name_or_path)
    if str(name_or_path) in presets():
        return build(str(name_or_path))
    raise ValueError(
        f"{str(name_or_path)!r} is neither a saved codec directory nor a preset; presets: {', '.join(presets())}"
    )
