"""Tokenizers: ``AudioTokenizer`` (files or arrays -> token ids), corpus extraction to disk, and id layouts
for speech language models. (Not named ``tokenizers``: that would shadow Hugging Face's package.)
"""

from voxtok.tokenizers.audio_tokenizer import AudioBatch, AudioTokenizer
from voxtok.tokenizers.layouts import LAYOUTS, Layout
from voxtok.tokenizers.stream import StreamDecoder

__all__ = ["LAYOUTS", "AudioBatch", "AudioTokenizer", "Layout", "StreamDecoder"]
