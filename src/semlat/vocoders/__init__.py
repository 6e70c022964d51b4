"""Vocoders: BigVGAN-v2 (mel or latent -> waveform) and, later, the semantic flow-matching vocoder."""
