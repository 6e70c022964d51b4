"""Sharded training (``train.strategy=fsdp``): PyTorch's FSDP2 (``fully_shard``), activation checkpointing,
and distributed checkpoints (``torch.distributed.checkpoint``) for the trainer.

Each trained module is sharded unit by unit (:func:`shard_units`: the elements of its ``nn.ModuleList``s, i.e.
the transformer or conv blocks, then the module itself), so every rank holds 1/N of the weights, gradients and
optimiser state, and a unit's full weights exist only while it runs. With ``train.precision=bf16`` the weights
are gathered and computed in bf16 and gradients reduced in fp32. Checkpoints keep the shards as they are
(``checkpoints/step-N/distributed/``, written by every rank into a shared folder, read back by any number of
ranks of the same world size for exact resume), and the trainer also writes the usual single-file model folder
(``model.safetensors`` + ``config.json``: the full exported weights gathered to rank 0), so inference, import and
evaluation never see a shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

STRATEGIES = ("ddp", "fsdp")
SHARDS = "distributed"
# torch.distributed.checkpoint costs ~0.8 s to import: every function below imports what it needs, so that a
# process that never shards (every DDP worker, every CLI call) does not pay for it.


def shard_units(module: nn.Module) -> list[nn.Module]:
    """The blocks to shard (and checkpoint) one by one: every element with parameters of each ``nn.ModuleList``
    found by walking ``module``'s children (not inside another unit)."""
    units: list[nn.Module] = []

    def visit(parent: nn.Module) -> None:
        for child in parent.children():
            if isinstance(child, nn.ModuleList):
                units.extend(c for c in child if next(c.parameters(), None) is not None)
            else:
                visit(child)

    visit(module)
    return units


def checkpoint_activations(units: list[nn.Module]) -> None:
    """Recompute each unit's activations in the backward pass instead of keeping them (non-reentrant
    ``torch.utils.checkpoint``; the modules, their names and weights are unchanged)."""
    from torch.utils.checkpoint import checkpoint

    for unit in units:
        forward = unit.forward

        def recomputed(*args: Any, _forward=forward, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        unit.forward = recomputed


def shard(module: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """``fully_shard`` each unit, then ``module``, over all ranks (1-D mesh on ``device``'s type)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if precision == "bf16" else MixedPrecisionPolicy())
    for unit in shard_units(module):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(module, mesh=mesh, mp_policy=policy)
    return module


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def gradient_sync(modules: list[nn.Module], enabled: bool) -> None:
    """Skip (or restore) the gradient reduce-scatter of sharded modules (gradient accumulation)."""
    for module in modules:
        if is_sharded(module):
            module.set_requires_gradient_sync(enabled)


def full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict on CPU on rank 0 (an empty dict elsewhere); a collective: every rank
    calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _sharded_state(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                   ema: nn.Module | None) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state: dict[str, Any] = {}
    for name, module in modules.items():
        state[f"model.{name}"] = get_model_state_dict(module)
        if name in optimizers:
            state[f"optim.{name}"] = get_optimizer_state_dict(module, optimizers[name])
    if ema is not None:
        state["ema"] = get_model_state_dict(ema)
    return state


def save_shards(folder: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                ema: nn.Module | None) -> None:
    """Every rank writes its shards of the sharded modules, their optimisers and the EMA into ``folder``."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_state(modules, optimizers, ema), checkpoint_id=str(folder))


def load_shards(folder: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                ema: nn.Module | None) -> None:
    """Read what :func:`save_shards` wrote back into the (already sharded) modules, optimisers and EMA."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = _sharded_state(modules, optimizers, ema)
    dcp.load(state, checkpoint_id=str(folder))
    for name, module in modules.items():
        set_model_state_dict(module, state[f"model.{name}"])
        if name in optimizers:
            set_optimizer_state_dict(module, optimizers[name], state[f"optim.{name}"])
    if ema is not None:
        set_model_state_dict(ema, state["ema"])
