"""Preset definitions for every codec family (registered on import by ``presets._load_families``)."""

from __future__ import annotations
