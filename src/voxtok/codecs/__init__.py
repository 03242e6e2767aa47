"""Codecs: ``Codec`` (encoder -> quantizer -> decoder, all injected), configs, named presets for every
family, save/load as ``config.json`` + ``model.safetensors``, and converters for published weights.
"""
