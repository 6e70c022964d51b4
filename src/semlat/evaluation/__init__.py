"""Evaluation: reconstruction metrics (and, later, latent diagnostics and generation metrics)."""
