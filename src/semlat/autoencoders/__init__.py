"""Audio autoencoders: the waveform VAE (Semantic-VAE) and, later, the mel DCAE."""
