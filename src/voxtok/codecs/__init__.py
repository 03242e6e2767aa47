"""Codecs: ``Codec`` (encoder -> quantizer -> decoder, all injected), part specs, named presets for every
family, save/load as ``config.json`` + ``model.safetensors``, and converters for published weights.
"""

from __future__ import annotations

from voxtok.codecs.codec import Codec
from voxtok.codecs.convert import convert
from voxtok.codecs.loading import build, load
from voxtok.codecs.parts import build_part, register_part
from voxtok.codecs.presets import preset_config, presets, register_preset
from voxtok.types import CodecOutput

__all__ = ["Codec", "CodecOutput", "build", "build_part", "convert", "load", "preset_config", "presets",
           "register_part", "register_preset"]
