"""semlat: semantic audio latents — Semantic-VAE, DC-Speech-VAE and SemanticVocoder behind one interface."""

__version__ = "0.1.0"
