"""Weight-normalised convolutions and conversions between weight-norm key formats.

semlat uses torch's parametrization weight norm (``torch.nn.utils.parametrizations.weight_norm``,
``dim=0``): a module's state-dict keys are ``<name>.parametrizations.weight.original0`` (g, the
per-output norm, shaped ``[dim0, 1, ...]``) and ``<name>.parametrizations.weight.original1`` (v),
and the effective weight is ``g * v / ||v||`` with the norm over every dim but 0. Note that dim 0
of a transposed convolution's weight ``[in, out, k]`` is the *input* channel.

Checkpoints written with the legacy ``torch.nn.utils.weight_norm`` (BigVGAN's released files) name
the same tensors ``<name>.weight_g`` / ``<name>.weight_v``; :func:`legacy_to_parametrized` and
:func:`parametrized_to_legacy` rename between the two. For inference, :func:`remove_weight_norm`
folds g and v into a plain ``weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

M = TypeVar("M", bound=nn.Module)

_G, _V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"


def weight_norm(module: M) -> M:
    """Apply weight norm (dim 0) to ``module.weight`` in place and return the module."""
    return _weight_norm(module, name="weight", dim=0)


def WNConv1d(*args, **kwargs) -> nn.Conv1d:
    """``nn.Conv1d(*args, **kwargs)`` with weight norm."""
    return weight_norm(nn.Conv1d(*args, **kwargs))


def WNConv2d(*args, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d(*args, **kwargs)`` with weight norm."""
    return weight_norm(nn.Conv2d(*args, **kwargs))


def WNConvTranspose1d(*args, **kwargs) -> nn.ConvTranspose1d:
    """``nn.ConvTranspose1d(*args, **kwargs)`` with weight norm (g over the input channel)."""
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


def has_weight_norm(model: nn.Module) -> bool:
    """True if any submodule still carries a weight-norm parametrization."""
    return any(parametrize.is_parametrized(m, "weight") for m in model.modules())


def remove_weight_norm(model: M) -> M:
    """Fold every weight-norm parametrization into a plain ``weight`` (in place); returns ``model``.

    The outputs do not change; the state dict loses its ``parametrizations`` keys.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def legacy_to_parametrized(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``X.weight_g``/``X.weight_v`` to ``X.parametrizations.weight.original0/1``."""
    out = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            key = key[: -len(".weight_g")] + _G
        elif key.endswith(".weight_v"):
            key = key[: -len(".weight_v")] + _V
        out[key] = value
    return out


def parametrized_to_legacy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`legacy_to_parametrized`."""
    out = {}
    for key, value in state.items():
        if key.endswith(_G):
            key = key[: -len(_G)] + ".weight_g"
        elif key.endswith(_V):
            key = key[: -len(_V)] + ".weight_v"
        out[key] = value
    return out
