"""Training losses: reconstruction (multi-scale mel), and later adversarial and latent losses."""

from semlat.losses.mel import MultiScaleMelLoss

__all__ = ["MultiScaleMelLoss"]
