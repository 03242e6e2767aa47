"""The systems ``voxtok eval`` compares: voxtok codecs and transformers codecs, behind one small interface.

``EvalModel.reconstruct(audio [S], sample_rate)`` returns the decoded audio at the system's own rate and the codes
it produced; evaluation does the rest (alignment, resampling to the evaluation rate, metrics) in one place, so every
system is measured with the same code.

``load_model(spec)`` accepts:

- a voxtok preset name (random weights) or a ``save_pretrained`` directory (``config.json`` with
  ``format_version``);
- ``KIND:PATH`` with a converter kind (``hf-dac``, ``hf-mimi``, ``dac``, ...): published weights converted with
  ``voxtok.codecs.convert`` and run in voxtok;
- a transformers ``save_pretrained`` directory of a ``DacModel``, ``EncodecModel``, ``MimiModel``,
  ``XcodecModel`` or ``Xcodec2Model`` (``config.json`` with that ``model_type``; ``transformers:DIR`` says so
  explicitly): run through transformers' own ``encode`` / ``decode``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import voxtok.audio as A
from voxtok.codecs.codec import Codec

# model_type in a transformers config.json -> the transformers class that runs it
TRANSFORMERS_CODECS = {"dac": "DacModel", "encodec": "EncodecModel", "mimi": "MimiModel", "xcodec": "XcodecModel",
                       "xcodec2": "Xcodec2Model"}


@dataclass
class Reconstruction:
    """What a system makes of one utterance.

    Attributes:
        audio: ``[S']`` float32 at the system's ``sample_rate``, ``S'`` the input's length at that rate (systems
            trim their own padding; evaluation aligns any sample left over).
        codes: ``[Q, T]`` int64, the valid frames only; ``None`` for a system without discrete codes.
    """

    audio: Tensor
    codes: Tensor | None


@dataclass
class EvalModel:
    """A system under evaluation. Subclasses implement ``reconstruct``.

    Attributes:
        name: how reports name it.
        sample_rate: the rate it takes and returns.
        frame_rate: code frames per second (``None`` without codes).
        codebook_sizes: ``K_q`` per codebook it produces (empty without codes).
        info: what identifies it in reports: kind, source, hash, parameters, and whatever settings it runs with.
    """

    name: str
    sample_rate: int
    frame_rate: float | None = None
    codebook_sizes: list[int] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def reconstruct(self, audio: Tensor, sample_rate: int) -> Reconstruction:
        """Encode and decode one utterance: ``audio [S]`` at ``sample_rate`` -> ``Reconstruction``."""
        raise NotImplementedError

    @property
    def bitrate(self) -> float | None:
        """Nominal bits per second: ``frame_rate * sum(log2 K_q)``."""
        if self.frame_rate is None or not self.codebook_sizes:
            return None
        return self.frame_rate * sum(math.log2(k) for k in self.codebook_sizes)


class VoxtokModel(EvalModel):
    """A voxtok ``Codec``: ``encode`` with the input's rate (resampled inside), ``decode`` to the input's length."""

    def __init__(self, codec: Codec, name: str, source: str, n_q: int | None = None, device: str = "cpu") -> None:
        from voxtok.codecs.spec import codec_hash

        codec = codec.eval().to(device)
        n = codec.num_codebooks if n_q is None else int(n_q)
        if not 1 <= n <= codec.num_codebooks:
            raise ValueError(f"n_q must be in [1, {codec.num_codebooks}] for {name}; got {n_q}")
        super().__init__(name=name, sample_rate=codec.sample_rate, frame_rate=codec.frame_rate,
                         codebook_sizes=list(codec.codebook_sizes[:n]))
        self.codec, self.n_q, self.device = codec, n, device
        self.info = {"kind": "voxtok", "source": source, "preset": codec.name, "hash": codec_hash(codec),
                     "parameters": sum(p.numel() for p in codec.parameters()), "n_q": n,
                     "num_codebooks": codec.num_codebooks, "causal": codec.causal}

    def reconstruct(self, audio: Tensor, sample_rate: int) -> Reconstruction:
        tokens = self.codec.encode(audio.reshape(1, 1, -1).to(self.device), sample_rate=sample_rate, n_q=self.n_q)
        y = self.codec.decode(tokens)
        n, t = int(tokens.audio_lengths[0]), int(tokens.lengths[0])
        return Reconstruction(audio=y[0, 0, :n].float().cpu(), codes=tokens.codes[0, :, :t].cpu())


class TransformersCodec(EvalModel):
    """A transformers codec run with its own ``encode`` / ``decode`` (all codebooks, highest bandwidth).

    Input is resampled to the model's rate with ``voxtok.audio.resample`` and prepared as the model's feature
    extractor would: zero-padded to whole frames (DAC), one zero sample appended and padded to whole frames
    (X-codec2, whose w2v-BERT features come from transformers' ``Xcodec2FeatureExtractor`` when torchaudio is
    installed, else from voxtok's ``KaldiFbank``, the same recipe; docs/interop.md). Output is cut to the input's
    length.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import transformers

        from voxtok.eval.backends import file_sha256

        path = Path(path)
        config = _read_config(path)
        model_type = config.get("model_type")
        if model_type not in TRANSFORMERS_CODECS:
            raise ValueError(f"{path}: transformers model_type {model_type!r} is not a codec voxtok eval runs; "
                             f"supported: {', '.join(sorted(TRANSFORMERS_CODECS))}")
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            raise ValueError(f"{path}: no .safetensors weights (pickled weights are not read)")
        cls = getattr(transformers, TRANSFORMERS_CODECS[model_type])
        model = cls.from_pretrained(str(path), use_safetensors=True).eval().to(device)
        cfg = model.config
        self.model, self.model_type, self.device = model, model_type, device
        rate = int(getattr(cfg, "sampling_rate", None) or cfg.sample_rate)
        # Mimi's config has no hop_length (a stride-2 downsampling follows its SEANet): derive it from the frame rate.
        self.hop = round(rate / cfg.frame_rate) if model_type == "mimi" else int(cfg.hop_length)
        options: dict[str, Any] = {}
        if model_type in ("encodec", "xcodec"):
            options["bandwidth"] = float(max(cfg.target_bandwidths))
        if model_type == "encodec" and int(cfg.audio_channels) != 1:
            raise ValueError(f"{path}: only mono EnCodec models are supported; this one has {cfg.audio_channels} "
                             f"channels")
        sizes = self._codebook_sizes(cfg, options)
        super().__init__(name=path.name, sample_rate=rate, frame_rate=rate / self.hop, codebook_sizes=sizes)
        self.options = options
        self.info = {"kind": "transformers", "source": str(path), "class": cls.__name__,
                     "transformers": transformers.__version__,
                     "hash": ", ".join(f"{w.name} {file_sha256(w)}" for w in weights),
                     "parameters": sum(p.numel() for p in model.parameters()), **options}
        if model_type == "xcodec2":
            self._features = self._xcodec2_features()
            self.info["features"] = self._features[0]

    def _codebook_sizes(self, cfg: Any, options: dict[str, Any]) -> list[int]:
        t = self.model_type
        if t == "dac":
            return [int(cfg.codebook_size)] * int(cfg.n_codebooks)
        if t == "mimi":
            return [int(cfg.codebook_size)] * int(cfg.num_quantizers)
        if t == "xcodec2":
            return [int(math.prod(cfg.quantization_levels))]
        # EnCodec and X-codec: the bandwidth sets how many codebooks; the model's quantizer says how many.
        q = self.model.quantizer.get_num_quantizers_for_bandwidth(options["bandwidth"])
        return [int(cfg.codebook_size)] * int(q)

    def _xcodec2_features(self) -> tuple[str, Any]:
        try:
            from transformers import Xcodec2FeatureExtractor

            extractor = Xcodec2FeatureExtractor()
            return "transformers Xcodec2FeatureExtractor", extractor
        except ImportError:
            from voxtok.models.xcodec2 import KaldiFbank

            return ("voxtok KaldiFbank (transformers' Xcodec2FeatureExtractor needs torchaudio, not installed; "
                    "same recipe, docs/interop.md)", KaldiFbank(self.sample_rate, self.hop))

    def reconstruct(self, audio: Tensor, sample_rate: int) -> Reconstruction:
        x = A.resample(audio.float().reshape(-1).cpu(), int(sample_rate), self.sample_rate)
        n = int(x.shape[-1])
        x = x.reshape(1, 1, n).to(self.device)
        m, t = self.model, self.model_type
        with torch.inference_mode():
            if t == "dac":
                x = F.pad(x, (0, (-n) % self.hop))
                codes = m.encode(x).audio_codes
                y = m.decode(audio_codes=codes).audio_values
            elif t == "encodec":
                enc = m.encode(x, bandwidth=self.options["bandwidth"])
                y = m.decode(enc.audio_codes, enc.audio_scales, last_frame_pad_length=enc.last_frame_pad_length)
                y = y.audio_values
                codes = torch.cat(list(enc.audio_codes), dim=-1)  # chunks (48 kHz) side by side
            elif t == "mimi":
                codes = m.encode(x, num_quantizers=len(self.codebook_sizes)).audio_codes
                y = m.decode(codes).audio_values
            elif t == "xcodec":
                codes = m.encode(x, bandwidth=self.options["bandwidth"]).audio_codes
                y = m.decode(codes).audio_values
            else:
                x = F.pad(x, (0, 1))
                x = F.pad(x, (0, (-x.shape[-1]) % self.hop))
                codes = m.encode(x, **self._xcodec2_inputs(x, n + 1)).audio_codes
                y = m.decode(audio_codes=codes).audio_values
        y = y.reshape(-1)[:n].float().cpu()
        if y.shape[-1] < n:
            y = F.pad(y, (0, n - y.shape[-1]))  # DAC's odd strides give a few samples less (docs/interop.md)
        return Reconstruction(audio=y, codes=codes.reshape(codes.shape[-2], -1).long().cpu())

    def _xcodec2_inputs(self, x: Tensor, n: int) -> dict[str, Tensor]:
        kind, extractor = self._features
        if kind.startswith("transformers"):
            feats = extractor(x[0, 0, :n].cpu().numpy(), sampling_rate=self.sample_rate, return_tensors="pt")
            return {"input_features": feats["input_features"].to(x.device),
                    "input_features_mask": feats["input_features_mask"].to(x.device)}
        feats, mask = extractor.to(x.device)(x, torch.tensor([n], device=x.device))
        return {"input_features": feats, "input_features_mask": mask}


def _read_config(path: Path) -> dict[str, Any]:
    file = path / "config.json"
    if not file.is_file():
        raise ValueError(f"{path}: no config.json (expected a voxtok or transformers save_pretrained directory)")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{file}: expected a JSON object")
    return config


def load_model(spec: str | Path | Codec | EvalModel, n_q: int | None = None, device: str = "cpu",
               trust_pickle: bool = False) -> EvalModel:
    """A system to evaluate from a spec (see the module docstring), a ``Codec`` or an ``EvalModel``.

    Args:
        spec: preset name, directory, ``KIND:PATH``, ``transformers:DIR``, a ``Codec`` or an ``EvalModel``.
        n_q: voxtok codecs: use the first ``n_q`` codebooks (default all).
        device: where the codec runs (metrics run on the CPU).
        trust_pickle: allow the ``dac`` converter to read its pickle-based ``.pth`` (read tensors-only even then).

    Raises:
        ValueError: the spec names nothing voxtok can evaluate (the message lists the accepted forms).
    """
    if isinstance(spec, EvalModel):
        return spec
    if isinstance(spec, Codec):
        return VoxtokModel(spec, spec.name or "codec", "Codec object", n_q, device)
    text = str(spec)
    from voxtok.codecs.convert import KINDS, convert

    kind, sep, rest = text.partition(":")
    if sep and kind == "transformers":
        return TransformersCodec(rest, device)
    if sep and kind in KINDS:
        codec = convert(kind, rest, trust_pickle=trust_pickle)
        return VoxtokModel(codec, f"{Path(rest).name} ({kind})", f"converted {kind} {rest}", n_q, device)
    path = Path(text)
    if path.is_dir():
        config = _read_config(path)
        if "format_version" in config:
            return VoxtokModel(Codec.from_pretrained(path), path.name, str(path), n_q, device)
        if config.get("model_type") in TRANSFORMERS_CODECS:
            return TransformersCodec(path, device)
        raise ValueError(f"{path}: config.json is neither a voxtok codec (format_version) nor a transformers codec "
                         f"(model_type one of {', '.join(sorted(TRANSFORMERS_CODECS))})")
    from voxtok.codecs.loading import build
    from voxtok.codecs.presets import presets

    if text in presets():
        codec = build(text)
        model = VoxtokModel(codec, text, "preset (random weights)", n_q, device)
        model.info["random_weights"] = True
        return model
    raise ValueError(f"{text!r} is not a preset, a voxtok or transformers save_pretrained directory, KIND:PATH "
                     f"(KIND one of {', '.join(sorted(KINDS))}) or transformers:DIR")
