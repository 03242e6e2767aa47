"""``Codec``: encoder -> quantizer -> decoder, all injected; the API speech-LLM pipelines call."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import voxtok.audio as A
from voxtok._version import __version__
from voxtok.codecs.parts import FORMAT_VERSION, build_part, legacy_renames, spec_of
from voxtok.quantizers.base import Quantizer
from voxtok.types import CodecOutput, Tokens

log = logging.getLogger("voxtok")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class Codec(nn.Module):
    """A neural audio codec made of injected parts.

    Args:
        encoder: audio ``[B, C, S]`` -> latents ``[B, D, T]``; exposes ``hop_length``, ``dimension``,
            ``output_length``.
        quantizer: a ``voxtok.quantizers.Quantizer`` over ``D``-dim latents.
        decoder: latents ``[B, D, T]`` -> audio ``[B, C, T * hop]``.
        sample_rate: the rate the parts were built for; input at another rate is resampled to it.
        channels: audio channels the encoder takes (1 for every voxtok preset; other input is mixed to mono).
        causal: every part is causal; enables ``streaming`` and exact batch == single item.
        name: preset name, kept in ``config.json``.
        chunk_seconds: inputs longer than this are encoded in chunks, so memory is bounded whatever the length
            (causal codecs stream through them exactly; non-causal ones use overlapping windows, see
            ``context_seconds`` and docs/codecs.md).
        context_seconds: for non-causal chunking, audio on each side of a chunk that the encoder sees but whose
            frames are discarded.
    """

    def __init__(
        self,
        encoder: nn.Module,
        quantizer: nn.Module,
        decoder: nn.Module,
        sample_rate: int,
        channels: int = 1,
        causal: bool = False,
        name: str | None = None,
        chunk_seconds: float = 60.0,
        context_seconds: float = 2.0,
    ) -> None:
        super().__init__()
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.causal = bool(causal)
        self.name = name
        self.chunk_seconds = float(chunk_seconds)
        self.context_seconds = float(context_seconds)
        enc_dim, dec_dim, q_dim = encoder.dimension, decoder.dimension, quantizer.dim
        if not enc_dim == q_dim == dec_dim:
            raise ValueError(f"dims must fit: encoder.dimension={enc_dim}, quantizer.dim={q_dim}, "
                             f"decoder.dimension={dec_dim}")
        if encoder.hop_length != decoder.hop_length:
            raise ValueError(f"hops must fit: encoder.hop_length={encoder.hop_length}, "
                             f"decoder.hop_length={decoder.hop_length}")
        self._stream_batch: int | None = None

    # -------------------------------------------------------------------------------------------------------
    # frame facts

    @property
    def hop_length(self) -> int:
        """Samples per frame at ``sample_rate``."""
        return int(self.encoder.hop_length)

    @property
    def frame_rate(self) -> float:
        """Frames (tokens per codebook) per second."""
        return self.sample_rate / self.hop_length

    @property
    def num_codebooks(self) -> int:
        return int(self.quantizer.num_codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self.quantizer.codebook_size)

    @property
    def codebook_sizes(self) -> list[int]:
        """Per-codebook sizes (equal to ``codebook_size`` everywhere unless an RVQ has per-stage sizes)."""
        sizes = getattr(self.quantizer, "codebook_sizes", None)
        return list(sizes) if sizes is not None else [self.codebook_size] * self.num_codebooks

    @property
    def bitrate(self) -> float:
        """Bits per second with all codebooks: ``frame_rate * sum(log2(K_q))``."""
        return self.frame_rate * sum(math.log2(k) for k in self.codebook_sizes)

    def encoded_length(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames for ``num_samples`` samples at ``sample_rate``: ``ceil(samples / hop)``."""
        if isinstance(num_samples, Tensor):
            return torch.div(num_samples + self.hop_length - 1, self.hop_length, rounding_mode="floor")
        return -(-int(num_samples) // self.hop_length)

    # -------------------------------------------------------------------------------------------------------
    # input handling

    def _prepare(
        self, audio: Tensor, lengths: Tensor | None, sample_rate: int | None
    ) -> tuple[Tensor, Tensor]:
        """Validate, mix down, resample and zero the padding: -> ``([B, C, S], lengths [B])``."""
        if not isinstance(audio, Tensor):
            raise ValueError(f"audio must be a torch.Tensor; got {type(audio).__name__}")
        if not audio.is_floating_point():
            raise ValueError(f"audio must be floating point in [-1, 1]; got dtype {audio.dtype}")
        x = A.promote(audio)
        b, c, s = x.shape
        if b == 0:
            raise A.AudioError("empty batch (B = 0)")
        if lengths is None:
            lengths = torch.full((b,), s, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).cpu()
        if lengths.shape != (b,):
            raise ValueError(f"lengths must be [B] = [{b}]; got shape {tuple(lengths.shape)}")
        if (lengths > s).any():
            raise ValueError(f"lengths must be <= the padded length {s}; got max {int(lengths.max())}")
        for i in range(b):
            n = int(lengths[i])
            if n <= 0:
                raise A.AudioError(f"item {i}: empty audio (length {n})")
            A.check_audio(x[i, :, :n], name=f"item {i}")
        if c != self.channels:
            if self.channels == 1:
                x = A.to_mono(x)
            else:
                raise ValueError(f"this codec takes {self.channels} channels; got {c}")
        # Follow the codec: audio goes to its device and floating dtype (half precision when the codec is).
        ref = next(self.parameters(), None)
        x = x.to(ref.device, ref.dtype) if ref is not None else x.float()
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            x = A.resample(x, int(sample_rate), self.sample_rate)
            lengths = torch.tensor([A.resampled_length(int(n), int(sample_rate), self.sample_rate) for n in lengths])
            lengths = lengths.clamp(min=1)
        mask = A.lengths_to_mask(lengths.to(x.device), x.shape[-1])
        # where, not multiply: the padding may hold NaN, and NaN * 0 is NaN.
        x = torch.where(mask[:, None, :], x, torch.zeros((), dtype=x.dtype, device=x.device))
        # Zero-pad to whole frames here, not inside the layers: then an item's last, partial frame sees the
        # same zeros alone as in a longer batch, and causal codecs give batch == single exactly.
        if self.is_streaming:
            if x.shape[-1] % self.hop_length:
                raise ValueError(
                    f"in streaming mode each chunk must be a whole number of frames ({self.hop_length} samples "
                    f"each); got {x.shape[-1]} samples"
                )
            return x, lengths
        return torch.nn.functional.pad(x, (0, (-x.shape[-1]) % self.hop_length)), lengths

    def _check_codes(self, codes: Tensor) -> None:
        if not isinstance(codes, Tensor) or codes.dim() != 3:
            shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
            raise ValueError(f"codes must be a [B, Q, T] tensor; got {shape}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor (int64); got dtype {codes.dtype}")
        q = codes.shape[1]
        if not 1 <= q <= self.num_codebooks:
            raise ValueError(f"codes have {q} codebooks; this codec has {self.num_codebooks} (any prefix 1..Q)")
        if isinstance(self.quantizer, Quantizer):
            return  # its decode checks every codebook's range, with the same sizes: one pass, not two
        for i, k in enumerate(self.codebook_sizes[:q]):
            row = codes[:, i]
            if row.numel() and (row.min() < 0 or row.max() >= k):
                bad = int(row.min()) if row.min() < 0 else int(row.max())
                raise ValueError(f"codes must be in [0, {k}); got {bad} in codebook {i}")

    # -------------------------------------------------------------------------------------------------------
    # encode / decode

    def encode_latents(
        self, audio: Tensor, lengths: Tensor | None = None, sample_rate: int | None = None
    ) -> Tensor:
        """Continuous pre-quantizer latents ``[B, D, T]``, ``T = ceil(S / hop)`` at the codec's rate."""
        x, lengths = self._prepare(audio, lengths, sample_rate)
        with torch.inference_mode():
            return self._encode_chunked(x, lengths)

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Latents ``[B, D, T]`` -> audio ``[B, C, T * hop]`` (no quantization)."""
        with torch.inference_mode():
            return self.decoder(latents)

    def _encode_chunked(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Encoder over ``x [B, C, S]`` (already whole frames, see ``_prepare``) in bounded memory.

        Streaming mode: one call, state carried. An encoder with ``takes_lengths`` (``models.base.Encoder``) gets
        the items' valid samples ``[B]`` in every call: the whole lengths in a one-pass call, and in each window
        of a chunked one (inputs over ``chunk_seconds``) the samples of each item inside that window (at least
        one: a window past an item's end holds only its padding, whose frames are not counted anyway)."""
        hop, s = self.hop_length, x.shape[-1]
        chunk = max(1, int(self.chunk_seconds * self.sample_rate) // hop) * hop
        # getattr: a user's encoder part need not subclass models.base.Encoder.
        if lengths is None or not getattr(self.encoder, "takes_lengths", False):
            lengths = None
        else:
            lengths = lengths.to(x.device)

        def encode(start: int, stop: int) -> Tensor:
            if lengths is None:
                return self.encoder(x[..., start:stop])
            return self.encoder(x[..., start:stop], (lengths - start).clamp(1, stop - start))

        if self.is_streaming or s <= chunk:
            return encode(0, s)
        frames = self.encoded_length(s)
        if self.causal:
            # Causal parts carry their state across chunks, so chunked codes equal one-pass codes exactly.
            outs = []
            with self.encoder.streaming(x.shape[0]):
                for start in range(0, s, chunk):
                    outs.append(encode(start, min(s, start + chunk)))
            return torch.cat(outs, dim=-1)
        # Non-causal: overlapping windows; frames within `context` of a cut see less context than one pass would.
        ctx = max(1, int(self.context_seconds * self.sample_rate) // hop)
        step = chunk // hop
        outs = []
        for f0 in range(0, frames, step):
            f1 = min(frames, f0 + step)
            a0, a1 = max(0, f0 - ctx), min(frames, f1 + ctx)
            z = encode(a0 * hop, a1 * hop)
            outs.append(z[..., f0 - a0 : f1 - a0])
        return torch.cat(outs, dim=-1)

    def encode(
        self,
        audio: Tensor,
        lengths: Tensor | None = None,
        sample_rate: int | None = None,
        n_q: int | None = None,
    ) -> Tokens:
        """Audio -> tokens.

        Args:
            audio: ``[S]``, ``[B, S]`` or ``[B, C, S]`` float in [-1, 1]; multichannel is mixed to mono.
            lengths: ``[B]`` valid samples per item (input rate); default: all of ``S``.
            sample_rate: the input's rate; resampled to ``self.sample_rate`` when it differs.
            n_q: use the first ``n_q`` codebooks (RVQ prefix); default all.

        Returns:
            ``Tokens`` with ``codes [B, n_q, T]``, ``lengths`` (frames), ``audio_lengths`` (samples at the
            codec's rate). Frames past an item's length hold codes of silence and are not counted in ``lengths``.

        Raises:
            voxtok.AudioError: an item is empty or holds NaN / Inf.
        """
        if n_q is not None and not 1 <= n_q <= self.num_codebooks:
            raise ValueError(f"n_q must be in [1, {self.num_codebooks}]; got {n_q}")
        x, lengths = self._prepare(audio, lengths, sample_rate)
        with torch.inference_mode():
            latents = self._encode_chunked(x, lengths)
            codes = self.quantizer.encode(latents, n_q=n_q)
        frames = self.encoded_length(lengths)
        return Tokens(codes, frames, lengths, self.frame_rate, self.sample_rate)

    def decode(self, tokens: Tokens | Tensor, lengths: Tensor | None = None) -> Tensor:
        """Tokens (or bare codes ``[B, Q, T]``) -> audio ``[B, 1, S]``.

        ``S`` is the longest item: from ``Tokens`` each item's ``audio_lengths``; from bare codes
        ``T * hop`` unless ``lengths`` (samples) is given. Samples past an item's own length are zero.
        """
        if isinstance(tokens, Tokens):
            codes, lengths = tokens.codes, tokens.audio_lengths if lengths is None else lengths
        else:
            codes = tokens
        self._check_codes(codes)
        codes = codes.long()
        b, _, t = codes.shape
        if self.is_streaming:
            lengths = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).to(codes.device)
            if lengths.shape != (b,):
                raise ValueError(f"lengths must be [B] = [{b}]; got shape {tuple(lengths.shape)}")
            if (lengths > t * self.hop_length).any():
                raise ValueError(f"lengths (samples) must be <= frames * hop = {t * self.hop_length}; "
                                 f"got max {int(lengths.max())}")
        with torch.inference_mode():
            z = self.quantizer.decode(codes)
            y = self.decoder(z)
        if lengths is None:
            return y
        s = int(lengths.max())
        y = y[..., :s]
        return y * A.lengths_to_mask(lengths, s)[:, None, :].to(y.dtype)

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> CodecOutput:
        """Training pass: ``audio [B, C, S]`` -> ``CodecOutput`` with the reconstruction cut to ``S`` samples."""
        x = A.promote(audio)
        s = x.shape[-1]
        if x.shape[1] != self.channels:
            raise ValueError(f"this codec takes {self.channels} channels; got {x.shape[1]}")
        latents = self.encoder(x)
        mask = None
        if lengths is not None:
            mask = A.lengths_to_mask(self.encoded_length(lengths.to(latents.device)), latents.shape[-1])
        q = self.quantizer(latents, mask=mask)
        y = self.decoder(q.z_q)[..., :s]
        return CodecOutput(audio=y, quantizer=q, latents=latents, mask=mask)

    # -------------------------------------------------------------------------------------------------------
    # streaming

    @property
    def is_streaming(self) -> bool:
        return self._stream_batch is not None

    @contextmanager
    def streaming(self, batch_size: int) -> Iterator[None]:
        """Encode / decode chunk by chunk (each a whole number of frames); leaving the context resets all state.

        Concatenated streaming codes equal offline codes exactly, and streamed audio equals offline audio
        within float tolerance. Causal codecs only.
        """
        if not self.causal:
            raise ValueError(f"streaming needs a causal codec; {self.name or 'this codec'} is not causal")
        if self.is_streaming:
            raise RuntimeError("already streaming: leave the current `streaming()` context first")
        with self.encoder.streaming(batch_size), self.decoder.streaming(batch_size):
            self._stream_batch = batch_size
            try:
                yield
            finally:
                self._stream_batch = None

    # -------------------------------------------------------------------------------------------------------
    # save / load

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this codec: its own arguments and each part as a spec (registry name and
        recorded constructor arguments; see ``voxtok.codecs.parts``)."""
        return {
            "format_version": FORMAT_VERSION,
            "voxtok_version": __version__,
            "name": self.name,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "causal": self.causal,
            "chunk_seconds": self.chunk_seconds,
            "context_seconds": self.context_seconds,
            "encoder": spec_of(self.encoder, "encoder"),
            "quantizer": spec_of(self.quantizer, "quantizer"),
            "decoder": spec_of(self.decoder, "decoder"),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Codec:
        """Build a codec (random weights) from ``config()``'s dict."""
        version = config.get("format_version")
        if not isinstance(version, int):
            raise ValueError(f"config has no integer format_version; got {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"config format_version {version} is newer than this voxtok reads ({FORMAT_VERSION}); "
                f"upgrade voxtok (saved by voxtok {config.get('voxtok_version')})"
            )
        missing = [k for k in ("sample_rate", "encoder", "quantizer", "decoder") if k not in config]
        if missing:
            raise ValueError(f"config is missing {', '.join(missing)}")
        return cls(
            encoder=build_part(config["encoder"]),
            quantizer=build_part(config["quantizer"]),
            decoder=build_part(config["decoder"]),
            sample_rate=config["sample_rate"],
            channels=config.get("channels", 1),
            causal=config.get("causal", False),
            name=config.get("name"),
            chunk_seconds=config.get("chunk_seconds", 60.0),
            context_seconds=config.get("context_seconds", 2.0),
        )

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into the directory ``path`` (created if needed)."""
        from safetensors.torch import save_model

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.config()
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        metadata = {"format": "pt", "voxtok_version": config["voxtok_version"]}
        save_model(self, str(path / WEIGHTS_NAME), metadata=metadata)
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Codec:
        """Load a ``save_pretrained`` directory (eval mode). A preset name is ``voxtok.load``'s to resolve."""
        path = Path(path)
        if not path.is_dir():
            raise ValueError(
                f"{str(path)!r} is not a saved codec directory ({CONFIG_NAME} + {WEIGHTS_NAME}); to build a preset "
                f"by name (random weights) use voxtok.load({str(path)!r})"
            )
        cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        for f in (cfg_file, weights):
            if not f.is_file():
                raise ValueError(f"{path}: missing {f.name} (a saved codec has {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            config = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_file}: not valid JSON ({e})") from e
        codec = cls.from_config(config)
        renames = [(f"{role}.{old}", f"{role}.{new}") for role in ("encoder", "quantizer", "decoder")
                   for old, new in legacy_renames(config.get(role, {}))]  # fmt: skip
        codec.load_weights(weights, renames)
        codec.eval()
        return codec

    def load_weights(self, file: str | Path, renames: Sequence[tuple[str, str]] = ()) -> None:
        """Load a safetensors file strictly: every tensor present, none extra, every shape equal.

        ``renames``: ``(old prefix, new prefix)`` pairs applied to the file's tensor names first (weights saved
        under a part's old layout; ``voxtok.codecs.parts.legacy_renames``).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{file}: not a readable safetensors file ({e})") from e
        for old, new in renames:
            state = {new + k[len(old):] if k.startswith(old) else k: v for k, v in state.items()}
        own = self.state_dict()
        # save_model drops one name of each group of tensors sharing memory; those names are not "missing".
        missing = [k for k in own if k not in state and not _shares_storage(k, own, state)]
        extra = [k for k in state if k not in own]
        if missing or extra:
            raise ValueError(f"{file}: weights do not fit this codec; missing {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}")
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise ValueError(f"{file}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        self.load_state_dict(state, strict=False)


def _shares_storage(name: str, own: dict[str, Tensor], state: dict[str, Tensor]) -> bool:
    t = own[name]
    return any(
        k in state and k != name and v.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
        for k, v in own.items()
    )
