"""Scale-out under torchrun: ranks take disjoint shards, rank 0 keeps the manifest.

A shard is one whole batch on one rank, so BN statistics are never split across processes (the
sub-batch statistics problem of DataParallel-style synthesis does not arise) and no tensors are
exchanged; only shard lists and records travel, as Python objects.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # init_world joined the process group, so close_world leaves it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def my_share(self, items: list) -> list:
        """This rank's items: every size-th one, starting at rank (disjoint, covering)."""
        return items[self.rank :: self.size]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value):
        """Rank 0's value on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's value, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values


def init_world(device_type: str) -> World:
    """Join the torchrun process group if there is one (gloo on CPU, NCCL on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    joins = not dist.is_initialized()
    if joins:
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)  # NCCL binds each process to its own GPU
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, owns_group=joins)


def close_world(world: World) -> None:
    """Leave the process group only if `init_world` joined it: a caller that set the group up
    (a pipeline running synthesis, then search) keeps it for its next stage."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()
