"""X-codec2's encoder: BigCodec acoustic features and w2v-BERT 2.0 semantic features, fused into one latent.

X-codec2 (Ye et al. 2025, https://arxiv.org/abs/2502.04128) encodes 16 kHz speech at 50 frames per second:

- acoustic: ``BigCodecEncoder`` on the waveform (hop 320) -> ``[B, 1024, T]``;
- semantic: Kaldi-style log-mel filterbanks (80 bins, 25 ms windows every 10 ms, as SeamlessM4T's and w2v-BERT
  2.0's feature extractor makes them), normalised per utterance and stacked in pairs (160 values at 50 Hz), through
  a frozen w2v-BERT 2.0 (``Wav2Vec2BertModel``, 16 layers in X-codec2) and a small conv ``SemanticAdapter``
  -> ``[B, 1024, T]``;
- ``fuse``: one linear layer over the concatenation ``[semantic, acoustic]`` -> latents ``[B, 2048, T]``.

The semantic model is transformers' implementation, built from its config (transformers is needed for this
encoder only). The filterbank is computed here in torch (``KaldiFbank``), to the same recipe as transformers'
``Xcodec2FeatureExtractor``, so ``Codec.encode`` takes raw audio like every other voxtok codec.

Frames: for ``S`` samples the encoder zero-pads to whole frames and gives ``ceil(S / 320)``; the filterbank
runs over the padded signal with 160 zeros more on each side, which yields exactly two filterbank frames per
acoustic frame. transformers' feature extractor first appends one zero sample and then pads to whole frames, so
for ``S`` not a multiple of 320 both see the same signal; for ``S`` a multiple of 320 transformers encodes one
more frame of silence (``S / 320 + 1`` frames, and its normalisation statistics include that silence). Appending
one zero sample before encoding reproduces its codes exactly for every length (docs/interop.md).

X-codec2's quantizer is ``FiniteScalarQuantizer.named("xcodec2", dim=2048)`` (``voxtok.quantizers``): its projected
latents are bounded once before the grid's own bound, as transformers' ``Xcodec2Quantizer`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxtok.models import hf
from voxtok.models.base import Encoder
from voxtok.models.bigcodec import BigCodecEncoder
from voxtok.models.conv import Conv1d

__all__ = ["KaldiFbank", "SemanticAdapter", "XCodec2Encoder"]


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: int, low_freq: float, high_freq: float) -> Tensor:
    """Kaldi's triangular mel filters ``[num_bins, n_fft // 2 + 1]`` (float32; the Nyquist column is zero).

    Triangles are linear in Kaldi's mel scale ``1127 ln(1 + f / 700)``, with edges evenly spaced between
    ``low_freq`` and ``high_freq``; unnormalised (peak 1), as ``compute-fbank-feats`` makes them. Computed in
    float32 in the order torchaudio's ``kaldi.fbank`` uses, so both give the same filter values to the bit (the
    features feed a model whose codes are compared exactly)."""

    def mel(freq: float) -> float:
        return 1127.0 * math.log(1.0 + freq / 700.0)

    lo, delta = mel(low_freq), (mel(high_freq) - mel(low_freq)) / (num_bins + 1)
    index = torch.arange(num_bins)[:, None]
    left, centre, right = lo + index * delta, lo + (index + 1.0) * delta, lo + (index + 2.0) * delta
    freqs = (sample_rate / n_fft) * torch.arange(float(n_fft // 2), dtype=torch.float32)
    bins = (1127.0 * (1.0 + freqs / 700.0).log())[None, :]
    rising, falling = (bins - left) / (centre - left), (right - bins) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return F.pad(banks, (0, 1))


class KaldiFbank(nn.Module):
    """w2v-BERT 2.0 input features as X-codec2 makes them: audio ``[B, 1, S]`` -> ``[B, T, 160]``, ``T = S / hop``.

    Per item: the waveform (zero-padded to whole frames of ``hop`` samples, then ``hop / 2`` zeros on each side)
    is scaled to 16-bit range and cut into 25 ms windows every 10 ms (Kaldi ``snip_edges``); each window has its
    mean removed, pre-emphasis 0.97, a Povey window, a 512-point power spectrum, 80 Kaldi mel bins (20 Hz to
    Nyquist) and a floored log. Each mel bin is then normalised over the item's frames (mean 0, unbiased variance
    1, ``+1e-7``) and consecutive pairs of frames are stacked: ``2T`` frames of 80 -> ``T`` frames of 160.

    Args:
        sample_rate: 16000 (the 400 / 160-sample windows are w2v-BERT's 25 / 10 ms at 16 kHz).
        hop_length: samples per output frame; must be twice the 160-sample filterbank shift (320).
        padding_value: what padded frames of a shorter item hold in a batch (transformers: 1.0).
    """

    num_mel_bins = 80
    frame_length = 400
    frame_shift = 160
    n_fft = 512
    stride = 2

    def __init__(self, sample_rate: int = 16000, hop_length: int = 320, padding_value: float = 1.0) -> None:
        super().__init__()
        if sample_rate != 16000:
            raise ValueError(f"KaldiFbank makes w2v-BERT 2.0 features at 16 kHz; got sample_rate={sample_rate}")
        if hop_length != self.stride * self.frame_shift:
            raise ValueError(f"hop_length must be {self.stride * self.frame_shift} (two filterbank frames of "
                             f"{self.frame_shift} samples per token); got {hop_length}")  # fmt: skip
        self.sample_rate, self.hop_length, self.padding_value = sample_rate, hop_length, float(padding_value)
        # float32 throughout, as torchaudio's kaldi.fbank computes them (see kaldi_mel_banks).
        window = torch.hann_window(self.frame_length, periodic=False, dtype=torch.float32).pow(0.85)  # Povey
        banks = kaldi_mel_banks(self.num_mel_bins, self.n_fft, sample_rate, 20.0, sample_rate // 2)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_banks", banks.T.contiguous(), persistent=False)  # [257, 80]

    @property
    def dimension(self) -> int:
        return self.num_mel_bins * self.stride

    def log_mel(self, wave: Tensor) -> Tensor:
        """Unnormalised log-mel frames: ``[N, L]`` waveforms in [-1, 1] -> ``[N, 1 + (L - 400) // 160, 80]``."""
        frames = (wave.float() * 32768.0).unfold(-1, self.frame_length, self.frame_shift)  # [N, F, 400]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # the first sample is its own previous
        frames = (frames - 0.97 * previous) * self.window
        power = torch.fft.rfft(frames, n=self.n_fft).abs().square()  # zero-padded to 512 points
        mel = torch.matmul(power, self.mel_banks)
        return mel.clamp_min(torch.finfo(torch.float32).eps).log()

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Audio ``[B, 1, S]`` -> (features ``[B, T, 160]`` float32, mask ``[B, T]`` int64, 1 = valid frame).

        ``T = ceil(S / hop)``. With ``lengths`` ``[B]`` (valid samples per item), item ``i`` is featurised over
        its own ``ceil(lengths[i] / hop)`` frames only (its statistics ignore the batch padding), and its frames
        after those hold ``padding_value`` with mask 0, as transformers' feature extractor pads a batch."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"KaldiFbank takes mono audio [B, 1, S]; got shape {tuple(audio.shape)}")
        b, s = audio.shape[0], audio.shape[-1]
        hop, half = self.hop_length, self.hop_length // 2
        t = -(-s // hop)
        wave = F.pad(audio[:, 0], (half, t * hop - s + half))
        mask = torch.ones(b, t, dtype=torch.long, device=audio.device)
        if lengths is None:
            return self._normalise(self.log_mel(wave)).reshape(b, t, self.dimension), mask
        frames = [max(1, min(t, -(-int(n) // hop))) for n in lengths.tolist()]
        out = wave.new_full((b, t, self.dimension), self.padding_value, dtype=torch.float32)
        for i, n in enumerate(frames):
            # Each item's own frames plus the half hop of zeros after them (not the batch's next samples).
            item = F.pad(wave[i : i + 1, : half + n * hop], (0, half))
            out[i, :n] = self._normalise(self.log_mel(item)).reshape(n, self.dimension)
            mask[i, n:] = 0
        return out, mask

    @staticmethod
    def _normalise(mel: Tensor) -> Tensor:
        mean = mel.mean(dim=-2, keepdim=True)
        var = mel.var(dim=-2, keepdim=True, unbiased=True)
        return (mel - mean) / torch.sqrt(var + 1e-7)


class SemanticAdapter(nn.Module):
    """X-codec2's adapter after the semantic model: ``[B, C, T]`` -> ``[B, C, T]``.

    ``h = relu(conv1(x))``; ``conv4(h + conv3(relu(conv2(h))))``; kernel-3 "same" convolutions, ``conv1`` and
    ``conv4`` without bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv1d(channels, channels, kernel_size=3, bias=False)
        self.conv2 = Conv1d(channels, channels, kernel_size=3)
        self.conv3 = Conv1d(channels, channels, kernel_size=3)
        self.conv4 = Conv1d(channels, channels, kernel_size=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv1(x))
        return self.conv4(h + self.conv3(F.relu(self.conv2(h))))


def _build_semantic_model(config: dict[str, Any]) -> nn.Module:
    """A transformers ``Wav2Vec2BertModel`` (random weights) from its config dict, as saved inside X-codec2's."""
    if config.get("model_type") != "wav2vec2-bert":
        raise ValueError(
            f"X-codec2's semantic model is a 'wav2vec2-bert' config; got model_type={config.get('model_type')!r}"
        )
    return hf.build_model(config)  # bookkeeping entries of a saved config (``_name_or_path``, ...) are dropped


class XCodec2Encoder(Encoder):
    """X-codec2's encoder: 16 kHz audio ``[B, 1, S]`` -> latents ``[B, D, ceil(S / 320)]``.

    ``D = semantic width + dimension_acoustic`` (X-codec2: 1024 + 1024 = 2048). See the module docstring for the
    two paths and the frame rule.

    Args:
        semantic_model: the w2v-BERT 2.0 config as a dict with ``model_type: "wav2vec2-bert"`` (transformers'
            ``Wav2Vec2BertConfig`` fields; X-codec2: its 1024-wide, 16-layer ``semantic_model_config``).
        acoustic_dim: width of the acoustic features (X-codec2's ``hidden_size``: 1024).
        acoustic_channels: ``BigCodecEncoder`` width after its first convolution (``encoder_hidden_size``: 48).
        ratios: ``BigCodecEncoder`` strides (``downsampling_ratios``); their product must be 320.
        freeze_semantic: keep the semantic model frozen (eval mode, no gradients), as X-codec2 trains.
    """

    takes_lengths = True  # Codec.encode passes the items' valid samples (per-item filterbank statistics)

    # Reference sizes (the xcodec2-50hz presets read them). "xcodec2": transformers' Xcodec2Config defaults, which
    # are the published HKUSTAudio/xcodec2 sizes: w2v-BERT 2.0 (Wav2Vec2BertConfig defaults, which are
    # facebook/w2v-bert-2.0's) cut to the 16 layers X-codec2 keeps. "tiny": the same stack at toy widths, hop 320
    # (the filterbank fixes it), for tests.
    CONFIGS: ClassVar[dict[str, dict[str, Any]]] = {
        "xcodec2": dict(
            semantic_model={"model_type": "wav2vec2-bert", "num_hidden_layers": 16},
            acoustic_dim=1024,
            acoustic_channels=48,
            ratios=[2, 2, 4, 4, 5],
        ),
        "tiny": dict(
            semantic_model={
                "model_type": "wav2vec2-bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 32, "output_hidden_size": 16, "conv_depthwise_kernel_size": 3,
                "left_max_position_embeddings": 8, "right_max_position_embeddings": 2,
            },  # fmt: skip
            acoustic_dim=16,
            acoustic_channels=2,
            ratios=[2, 2, 4, 4, 5],
        ),
    }

    def __init__(
        self,
        semantic_model: dict[str, Any],
        acoustic_dim: int = 1024,
        acoustic_channels: int = 48,
        ratios: Sequence[int] = (2, 2, 4, 4, 5),
        freeze_semantic: bool = True,
    ) -> None:
        super().__init__()
        self.acoustic = BigCodecEncoder(acoustic_dim, acoustic_channels, ratios)
        self.features = KaldiFbank(16000, self.acoustic.hop_length)
        self.semantic = _build_semantic_model(semantic_model)
        config = self.semantic.config
        if int(config.feature_projection_input_dim) != self.features.dimension:
            raise ValueError(f"the semantic model takes {config.feature_projection_input_dim}-dim features; "
                             f"X-codec2's filterbank makes {self.features.dimension}")  # fmt: skip
        if getattr(config, "add_adapter", False):
            raise ValueError("a semantic model with add_adapter=True changes the frame rate; X-codec2's has none")
        hf.disable_augmentation(self.semantic)
        semantic_dim = int(config.hidden_size)
        self.adapter = SemanticAdapter(semantic_dim)
        self.channels = 1
        self.dimension = semantic_dim + int(acoustic_dim)
        self.hop_length = self.acoustic.hop_length
        self.fuse = nn.Linear(self.dimension, self.dimension)
        self.freeze_semantic = bool(freeze_semantic)
        if self.freeze_semantic:
            hf.freeze(self.semantic)

    def train(self, mode: bool = True) -> XCodec2Encoder:
        super().train(mode)
        if self.freeze_semantic:
            hf.freeze(self.semantic)  # a frozen model never runs dropout
        return self

    def output_length(self, input_length: int) -> int:
        return -(-int(input_length) // self.hop_length)

    def semantic_features(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Audio ``[B, 1, S]`` -> adapted semantic features ``[B, semantic width, ceil(S / hop)]``."""
        feats, mask = self.features(audio, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_semantic):
            # The mask is always passed (all ones for full items), as transformers' feature extractor does.
            hidden = self.semantic(input_features=feats.to(audio.dtype), attention_mask=mask).last_hidden_state
        return self.adapter(hidden.transpose(1, 2))

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[B, 1, S]`` -> ``[B, D, ceil(S / hop)]``.

        ``lengths`` ``[B]`` (optional, valid samples per item): each item's filterbank statistics then cover only
        its own samples, as transformers' feature extractor does for a padded batch. The acoustic path always
        sees the zero-padded batch (frames near an item's end see its padding, as in X-codec2)."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"XCodec2Encoder takes mono audio [B, 1, S]; got shape {tuple(audio.shape)}")
        s = audio.shape[-1]
        padded = F.pad(audio, (0, self.output_length(s) * self.hop_length - s))
        semantic = self.semantic_features(padded, lengths)
        acoustic = self.acoustic(padded)
        fused = torch.cat([semantic, acoustic], dim=1).transpose(1, 2)
        return self.fuse(fused).transpose(1, 2)

