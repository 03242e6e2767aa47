"""Tokenizers: ``AudioTokenizer`` (files or arrays -> token ids), corpus extraction to disk, and id layouts
for speech language models. (Not named ``tokenizers``: that would shadow Hugging Face's package.)
"""
