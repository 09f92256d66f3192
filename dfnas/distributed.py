"""The torchrun world: which process this is, and what the processes exchange.

Synthesis uses it to share out whole shards (Python objects travel, no tensors); search uses it
for data-parallel supernet training (every rank draws the same global batch and takes its own
rows, gradients are averaged with one all-reduce) and to share out candidate evaluations. With
one process every helper is the identity, so single-process runs do exactly what they did
before torchrun support existed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

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

    def my_rows(self, count: int) -> slice:
        """This rank's contiguous block of `count` rows (`count` must divide evenly)."""
        if count % self.size:
            raise ValueError(f"{count} rows do not split evenly over {self.size} processes")
        share = count // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

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

    def summed(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each tensor summed over the ranks (new tensors), with one all-reduce of a flat buffer:
        one message per call instead of one per tensor. The result is the same on every rank."""
        if not self.distributed or not tensors:
            return list(tensors)
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        pieces = flat.split([t.numel() for t in tensors])
        return [piece.view(t.shape).to(t.dtype) for piece, t in zip(pieces, tensors)]

    def averaged(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each tensor's mean over the ranks (new tensors; the inputs when there is one rank)."""
        if not self.distributed:
            return list(tensors)
        return [t / self.size for t in self.summed(tensors)]

    def broadcast_(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Overwrite `tensors` in place with rank `src`'s."""
        if self.distributed:
            for tensor in tensors:
                dist.broadcast(tensor, src=src)

    def check_same(self, value, what: str) -> None:
        """Raise unless every rank holds an equal `value` (ranks that drifted apart would train
        different supernets while rank 0 writes only its own)."""
        values = self.gather(value)
        if any(v != values[0] for v in values[1:]):
            raise RuntimeError(f"the {self.size} processes disagree on {what}: {values}")


def current_world() -> World:
    """The world of a process group someone already joined (one process if none)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")))


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
