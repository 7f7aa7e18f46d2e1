"""Who an iterator is: rank of world_size (DDP), worker of num_workers (DataLoader)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from jobs.errors import SpecError


@dataclass(frozen=True)
class World:
    """Who this iterator is: rank of world_size, worker of num_workers."""

    rank: int
    world_size: int
    worker: int = 0
    num_workers: int = 1


def resolve_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Return (rank, world_size): explicit values, else torch.distributed, else env, else 0/1.

    Args:
        rank: this process's rank, or None to find it.
        world_size: the number of ranks, or None to find it.

    Returns:
        ``(rank, world_size)``.

    Raises:
        SpecError: unless ``0 <= rank < world_size``.
    """
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            auto_rank, auto_world = dist.get_rank(), dist.get_world_size()
        else:
            auto_rank = int(os.environ.get("RANK", "0"))
            auto_world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = auto_rank if rank is None else rank
        world_size = auto_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise SpecError(f"rank {rank} must be in [0, world_size={world_size})")
    return rank, world_size
