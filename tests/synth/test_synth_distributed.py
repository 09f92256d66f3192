"""Joining and leaving the torchrun process group: synthesis leaves a group only if it joined it."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from dfnas.distributed import close_world, init_world


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, folder: str, port: int, caller_owns_group: bool) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    if caller_owns_group:  # e.g. a pipeline that runs synthesis and then a search in one group
        dist.init_process_group("gloo", rank=rank, world_size=2)
    world = init_world("cpu")
    gathered = world.gather(rank)
    close_world(world)
    record = {"size": world.size, "rank": world.rank, "owns": world.owns_group, "gathered": gathered,
              "still_joined": dist.is_initialized()}
    if dist.is_initialized():
        world.barrier()  # the caller's group still works after synthesis
        dist.destroy_process_group()
    Path(folder, f"{rank}.json").write_text(json.dumps(record))


@pytest.mark.parametrize("caller_owns_group", [False, True])
def test_synthesis_leaves_only_a_group_it_joined(tmp_path, caller_owns_group):
    """ownership: closing the world used to destroy a group the caller had set up."""
    mp.spawn(_rank, args=(str(tmp_path), _free_port(), caller_owns_group), nprocs=2, join=True)
    for rank in (0, 1):
        record = json.loads((tmp_path / f"{rank}.json").read_text())
        assert (record["size"], record["rank"], record["gathered"]) == (2, rank, [0, 1])
        assert record["owns"] is not caller_owns_group
        assert record["still_joined"] is caller_owns_group
