"""Incremental decoding: ids as an LM emits them -> audio of each frame as soon as the frame is complete."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack

import torch
from torch import Tensor

from voxtok.tokenizers.layouts import Layout

log = logging.getLogger("voxtok")


class StreamDecoder:
    """Decode a layout's ids chunk by chunk through a causal codec in streaming mode.

    ``push(ids)`` takes ids in any chunks (one id, a list, a 1-D tensor for ``flatten`` / ``first``; one step
    ``[Q]`` or steps ``[Q, n]`` for ``delay`` / ``parallel``) and returns the audio of the frames they complete, as
    a list of ``[C, frames_per_chunk * hop]`` tensors (the codec runs once per ``frames_per_chunk`` frames).
    An ``audio_end`` id ends the utterance: that push also returns the audio of the frames still held back.
    ``flush()`` returns the rest (``[C, S]``, possibly empty) and readies the stream for a new utterance.

    The concatenated audio equals ``AudioTokenizer.decode`` of the same codes within float tolerance: a causal
    codec's frame depends only on the frames before it, and the codec carries its state between calls.

    While a stream holds frames, the codec is in streaming mode and the tokenizer's ``encode`` / ``decode``
    refuse to run; ``flush()`` or ``close()`` (or leaving a ``with`` block) ends that.
    """

    def __init__(self, codec, layout: Layout, frames_per_chunk: int = 1) -> None:
        if not getattr(codec, "causal", False):
            name = getattr(codec, "name", None) or "this codec"
            raise ValueError(f"decode_stream needs a causal codec; {name} is not causal (its frames depend on "
                             f"later frames): decode the whole sequence with decode() instead")
        if int(frames_per_chunk) < 1:
            raise ValueError(f"frames_per_chunk must be >= 1; got {frames_per_chunk}")
        self.codec = codec
        self.layout = layout
        self.frames_per_chunk = int(frames_per_chunk)
        self._reader = layout.reader()
        self._pending = torch.zeros(layout.out_q, 0, dtype=torch.long)
        self._ctx: ExitStack | None = None

    @property
    def frames(self) -> int:
        """Frames read from the ids so far in this utterance (decoded or waiting for a whole chunk)."""
        return self._reader.frames

    @property
    def ended(self) -> bool:
        """True after ``audio_end``: further ids are refused until ``flush()``."""
        return self._reader.ended

    def push(self, ids: Tensor | Sequence[int] | int) -> list[Tensor]:
        """Ids (any chunk, in order) -> audio of the frames completed, one ``[C, S]`` tensor per codec call.

        Raises ``ValueError`` naming the position (counted from the utterance's first id) and the value of any
        id that does not belong where it is; the stream is then unchanged and may take the corrected ids.
        """
        codes = self._reader.push(ids)
        self._pending = torch.cat([self._pending, codes], 1)
        out = []
        n = self.frames_per_chunk
        while self._pending.shape[1] >= n:
            out.append(self._decode(self._pending[:, :n]))
            self._pending = self._pending[:, n:]
        if self._reader.ended and self._pending.shape[1]:
            out.append(self._decode(self._pending))
            self._pending = self._pending[:, :0]
        return out

    def flush(self) -> Tensor:
        """The audio of every complete frame not yet returned (``[C, S]``), then a fresh stream.

        Ids of an incomplete last frame (an LM stopped mid-frame, or before a delay pattern's tail) cannot be
        decoded; they are dropped with a warning.
        """
        partial = self._reader.finish(strict=False)
        if partial:
            log.warning("decode_stream: dropped %d incomplete frame(s) at the end of the ids", partial)
        audio = self._decode(self._pending) if self._pending.shape[1] else None
        if audio is None:
            audio = torch.zeros(self.codec.channels, 0, device=_device(self.codec))
        self.close()
        return audio

    def close(self) -> None:
        """Leave the codec's streaming mode and forget every id pushed (nothing is decoded)."""
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        self._reader = self.layout.reader()
        self._pending = self._pending[:, :0]

    def _decode(self, codes: Tensor) -> Tensor:
        if self._ctx is None:
            if self.codec.is_streaming:
                raise RuntimeError("the codec is already streaming (another decode_stream or codec.streaming() "
                                   "is open); flush() or close() it first")
            self._ctx = ExitStack()
            self._ctx.enter_context(self.codec.streaming(1))
        return self.codec.decode(codes[None].to(_device(self.codec)))[0]

    def __enter__(self) -> StreamDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned stream must not leave the codec in streaming mode.
        try:
            self.close()
        except Exception:  # at interpreter shutdown the modules it needs may already be gone
            pass


def _device(codec) -> torch.device:
    p = next(codec.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
