"""The seams between audio and the quantizer: small base classes that state each part's tensor contract.

Codecs are wired from these by builders, which check that dims and hops fit; ``forward`` never inspects the
concrete class of a part.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from voxtok.hparams import NamedConfigs, RecordsHParams

__all__ = ["Decoder", "Discriminator", "Encoder", "NamedConfigs", "Stage", "StreamingModule", "StreamingState"]


@dataclass
class StreamingState:
    """What a streaming module carries from one call to the next. Each streaming layer subclasses it with typed
    fields (a convolution's buffered input, an LSTM's hidden state, a Transformer's KV cache); a part with no
    state of its own gets this empty one, which marks it as streaming."""


class StreamingModule(nn.Module):
    """A module that can also run on a stream, one chunk at a time, carrying state between calls.

    Offline (the default) ``self.streaming_state`` is None and ``forward`` sees whole signals. Inside
    ``with module.streaming(batch_size):`` every ``StreamingModule`` in the tree holds the state made by its
    ``init_streaming_state`` (a ``StreamingState`` dataclass); ``forward`` reads and updates it. Leaving the
    context drops all state, so the next stream starts clean. Concatenated streaming outputs equal the offline
    output (tested per part).
    """

    def __init__(self) -> None:
        super().__init__()
        self.streaming_state: StreamingState | None = None

    def init_streaming_state(self, batch_size: int) -> StreamingState:
        """Fresh state for a stream of ``batch_size`` items: a ``StreamingState`` (subclass). Parts with no state
        of their own keep the empty base."""
        return StreamingState()

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


class Encoder(RecordsHParams, StreamingModule):
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


class Stage(RecordsHParams, StreamingModule):
    """Latents ``[B, D_in, T]`` -> latents ``[B, D_out, T']``: a step inside an ``EncoderChain`` / ``DecoderChain``
    (a Transformer over frames, a frame-rate change).

    Attributes:
        hop_length: frames in per frame out (1 when the frame rate is kept; a chain multiplies them).
    """

    hop_length: int

    def output_length(self, input_length: int) -> int:
        """Frames out for ``input_length`` frames in."""
        raise NotImplementedError


class Decoder(RecordsHParams, StreamingModule):
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


class Discriminator(RecordsHParams, nn.Module):
    """Audio ``[B, 1, S]`` -> ``(logits, features)``, one entry per sub-discriminator.

    ``logits[i]`` is a tensor of any shape (real/fake scores of sub-discriminator i); ``features[i]`` is the list
    of its intermediate feature maps, for feature matching.
    """

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:  # pragma: no cover
        raise NotImplementedError
