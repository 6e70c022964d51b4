"""Training losses: reconstruction (multi-scale mel), adversarial (LSGAN, feature matching) and
the waveform discriminators, and later latent losses."""

from semlat.losses.adversarial import (
    discriminate_pair,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from semlat.losses.discriminators import (
    MultiBandSTFTDiscriminator,
    PeriodDiscriminator,
    WaveDiscriminator,
    WaveDiscriminatorConfig,
)
from semlat.losses.level import FrameLevelLoss
from semlat.losses.mel import MultiScaleMelLoss

__all__ = [
    "FrameLevelLoss",
    "MultiBandSTFTDiscriminator",
    "MultiScaleMelLoss",
    "PeriodDiscriminator",
    "WaveDiscriminator",
    "WaveDiscriminatorConfig",
    "discriminate_pair",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]
