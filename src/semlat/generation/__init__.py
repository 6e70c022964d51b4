"""Latent generative models: flow matching (training loss, samplers) and their backbones."""
