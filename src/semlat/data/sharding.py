"""Which share of the work this process does: its rank of the world (from torch.distributed when it is
initialised). The tensor store's writers and the trainer's :class:`~semlat.training.distributed.DistInfo` (a
:class:`Ranks` with a device) both use it."""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from semlat.errors import ConfigError


@dataclass(frozen=True)
class Ranks:
    """This process's share of the work: ``rank`` of ``world_size``; ``synced`` when barriers work."""

    rank: int
    world_size: int
    synced: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.synced:
            dist.barrier()

    @classmethod
    def find(cls, rank: int | None = None, world_size: int | None = None) -> Ranks:
        """From the arguments, else from torch.distributed, else ``0`` of ``1``."""
        initialised = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialised else 0
        if world_size is None:
            world_size = dist.get_world_size() if initialised else 1
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside a world of {world_size} processes")
        return cls(rank, world_size, initialised and world_size > 1 and dist.get_world_size() == world_size)
