"""Training losses: multi-scale mel and multi-resolution STFT reconstruction, adversarial and feature
matching, SSL distillation from speech models and LM distillation from text models.
"""

from voxtok.losses.adversarial import AdversarialLoss, FeatureMatchingLoss, discriminator_loss, generator_loss
from voxtok.losses.balancer import FixedWeights, GradientBalancer
from voxtok.losses.cache import TeacherFeatureCache
from voxtok.losses.distill import (
    CombinedDistillation,
    LMDistillation,
    SSLDistillation,
    align_frames,
    distillation_loss,
    load_teacher,
    spread_placement,
)
from voxtok.losses.spectral import (
    EnvelopeCorrelationLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    SISDRLoss,
    WaveformL1Loss,
    shared_spectra,
    si_sdr,
    third_octave_bands,
)

__all__ = [
    "AdversarialLoss",
    "CombinedDistillation",
    "EnvelopeCorrelationLoss",
    "FeatureMatchingLoss",
    "FixedWeights",
    "GradientBalancer",
    "LMDistillation",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "SISDRLoss",
    "SSLDistillation",
    "TeacherFeatureCache",
    "WaveformL1Loss",
    "align_frames",
    "discriminator_loss",
    "distillation_loss",
    "generator_loss",
    "load_teacher",
    "shared_spectra",
    "si_sdr",
    "spread_placement",
    "third_octave_bands",
]
