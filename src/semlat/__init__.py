"""semlat: semantic audio latents — Semantic-VAE, DC-Speech-VAE and SemanticVocoder behind one interface.

``semlat.load(folder, device=..., precision=...)`` loads any model folder as a latent space with
``encode``/``decode`` on tensors and on paths (see :mod:`semlat.inference`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from semlat._version import __version__

__all__ = ["__version__", "load"]

if TYPE_CHECKING:
    from semlat.inference import LoadedSpace


def load(folder: Any, device: Any = "auto", precision: str = "fp32", **options: Any) -> LoadedSpace:
    """Load a semlat model folder for inference: see :func:`semlat.inference.load`."""
    inference = importlib.import_module("semlat.inference")  # imported on use: the package root stays light
    return inference.load(folder, device, precision, **options)
