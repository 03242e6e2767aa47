"""The demo: train the ``stft-fsq-50hz`` codec from scratch on a small corpus, then tokenize and evaluate it.

``run_demo`` (``voxtok demo``) runs the whole job with voxtok's own commands (docs/demo.md); ``build_corpus``
writes its training, validation and evaluation sets. The package holds the demo's recipe (``recipe.yaml``, also
``recipes/demo.yaml`` in a checkout) and its real recordings (``data/``, sources and licences in
``data/README.md``).
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
from voxtok.demo.run import RECIPE, DemoResult, demo_table, run_demo

__all__ = [
    "DATA",
    "RECIPE",
    "TRAIN_VOICES",
    "VALIDATION_VOICES",
    "DemoCorpus",
    "DemoResult",
    "build_corpus",
    "demo_table",
    "evaluation_files",
    "run_demo",
    "training_files",
    "validation_files",
]
