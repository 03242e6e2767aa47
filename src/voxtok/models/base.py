"""The seams between audio and the quantizer: small base classes that state each part's tensor contract.

Codecs are wired from these by builders, which check that dims and hops fit; ``forward`` never inspects the
concrete class of a part.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from torch import Tensor, nn


class NamedConfigs:
    """``Part.named(name, **overrides)`` builds a reference size from the class's ``CONFIGS`` table.

    ``CONFIGS`` maps a name to constructor keyword arguments; codec presets read the same tables, so each
    reference size is written down once. ``config_family`` names the table in error messages.
    """

    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {}
    config_family: ClassVar[str | None] = None

    @classmethod
    def named(cls, name: str, **overrides: Any) -> Self:
        """The configuration ``name`` of ``CONFIGS``, with ``overrides`` applied to its keyword arguments."""
        if name not in cls.CONFIGS:
            family = cls.config_family or cls.__name__
            raise ValueError(f"unknown {family} configuration {name!r}; known: {', '.join(cls.CONFIGS)}")
        return cls(**{**copy.deepcopy(cls.CONFIGS[name]), **overrides})


class StreamingModule(nn.Module):
    """A module that can also run on a stream, one chunk at a time, carrying state between calls.

    Offline (the default) ``self.streaming_state`` is None and ``forward`` sees whole signals. Inside
    ``with module.streaming(batch_size):`` every ``StreamingModule`` in the tree holds a state dict made by its
    ``init_streaming_state``; ``forward`` reads and updates it. Leaving the context drops all state, so the next
    stream starts clean. Concatenated streaming outputs equal the offline output (tested per part).
    """

    def __init__(self) -> None:
        super().__init__()
        self.streaming_state: dict[str, Any] | None = None

    def init_streaming_state(self, batch_size: int) -> dict[str, Any]:
        """Fresh state for a stream of ``batch_size`` items. Parts with no state of their own keep ``{}``."""
        return {}

    @property
    def is_streaming(self) -> bool:
        return self.streaming_state is not None

    @contextmanager
    def streaming(self, batch_size: int) -> Iterator[None]:
        """Stream through this module and every ``StreamingModule`` below it; state is dropped on exit."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive; got {batch_size}")
        parts = [m for m in self.modules() if isinstance(m, StreamingModule)]
        if any(m.is_streaming for m in parts):
            raise RuntimeError("already streaming: leave the current `streaming()` context first")
        try:
            for m in parts:
                m.streaming_state = m.init_streaming_state(batch_size)
            yield
        finally:
            for m in parts:
                m.streaming_state = None


class Encoder(StreamingModule):
    """Audio ``[B, C, S]`` -> latents ``[B, D, T]`` with ``T = output_length(S)``.

    Attributes:
        channels: audio channels C expected on input.
        dimension: latent width D.
        hop_length: samples per latent frame (the product of the strides).
        takes_lengths: True when ``forward(audio, lengths)`` also accepts the items' valid samples ``[B]`` (an
            encoder whose output for an item depends on statistics over its samples, as X-codec2's filterbank);
            ``Codec.encode`` then passes them, so an item padded in a batch encodes as it does alone.
    """

    channels: int
    dimension: int
    hop_length: int
    takes_lengths: ClassVar[bool] = False

    def output_length(self, input_length: int) -> int:
        """Frames produced for ``input_length`` samples (``ceil(S / hop)`` for voxtok's encoders)."""
        raise NotImplementedError

    def forward(self, audio: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Decoder(StreamingModule):
    """Latents ``[B, D, T]`` -> audio ``[B, C, S]`` with ``S = output_length(T)`` (``T * hop`` for voxtok's).

    Attributes:
        channels: audio channels C produced.
        dimension: latent width D expected on input.
        hop_length: samples per latent frame.
    """

    channels: int
    dimension: int
    hop_length: int

    def output_length(self, input_length: int) -> int:
        """Samples produced for ``input_length`` frames."""
        raise NotImplementedError

    def forward(self, latents: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Discriminator(nn.Module):
    """Audio ``[B, 1, S]`` -> ``(logits, features)``, one entry per sub-discriminator.

    ``logits[i]`` is a tensor of any shape (real/fake scores of sub-discriminator i); ``features[i]`` is the list
    of its intermediate feature maps, for feature matching.
    """

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:  # pragma: no cover
        raise NotImplementedError
