"""The demo: train the ``stft-fsq-50hz`` codec from scratch on a small corpus, then tokenize and evaluate.

This package holds the demo's data (``data/``, real recordings with their sources and licences in
``data/README.md``) and ``build_corpus``, which writes the demo's training, validation and evaluation sets.
"""

from voxtok.demo.corpus import (
    DATA,
    TRAIN_VOICES,
    VALIDATION_VOICES,
    DemoCorpus,
    build_corpus,
    evaluation_files,
    training_files,
    validation_files,
)

__all__ = [
    "DATA",
    "TRAIN_VOICES",
    "VALIDATION_VOICES",
    "DemoCorpus",
    "build_corpus",
    "evaluation_files",
    "training_files",
    "validation_files",
]
