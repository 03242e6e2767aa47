"""Tokenizers: ``AudioTokenizer`` (files or arrays -> token ids), corpus extraction to disk, and id layouts
for speech language models. (Not named ``tokenizers``: that would shadow Hugging Face's package.)
"""

from voxtok.tokenizers.audio_tokenizer import AudioBatch, AudioTokenizer
from voxtok.tokenizers.layouts import LAYOUTS, Layout
from voxtok.tokenizers.stream import StreamDecoder

# Corpus extraction (docs/extraction.md), imported on first use so that `import voxtok` stays free of Lightning
# and pyarrow.
_EXTRACTION = {"extract": "extraction", "ExtractionResult": "extraction", "read_tokens": "shards",
               "merge_shards": "shards", "Record": "manifest", "list_inputs": "manifest",
               "read_manifest": "manifest"}


def __getattr__(name: str):  # PEP 562
    if name in _EXTRACTION:
        import importlib

        return getattr(importlib.import_module(f"voxtok.tokenizers.{_EXTRACTION[name]}"), name)
    raise AttributeError(f"module 'voxtok.tokenizers' has no attribute {name!r}")


__all__ = ["LAYOUTS", "AudioBatch", "AudioTokenizer", "ExtractionResult", "Layout", "Record", "StreamDecoder",
           "extract", "list_inputs", "merge_shards", "read_manifest", "read_tokens"]
