"""semlat: semantic audio latents — Semantic-VAE, DC-Speech-VAE and SemanticVocoder behind one interface.

``semlat.load(path, device=..., precision=..., **options)`` loads any model folder, checkpoint or training run
for inference: a latent space (``encode``/``decode`` on tensors and on paths), a TTS or text-to-audio model
with its latent space, a judge, or any other model (see :func:`semlat.models.load`).
"""

from __future__ import annotations

from typing import Any

from semlat._version import __version__

__all__ = ["__version__", "load"]


def load(path: Any, device: Any = "auto", precision: str = "fp32", **options: Any) -> Any:
    """Load a semlat model folder, checkpoint or training run for inference: see :func:`semlat.models.load`."""
    from semlat.models import load as load_any  # imported on use: the package root stays light

    return load_any(path, device, precision, **options)
