"""Per-shard random streams: shard i's randomness depends only on (seed, i), so shards can be made
in any order, on any rank, or again on resume, with the same bytes."""
from __future__ import annotations

import numpy as np
import torch


def shard_generator(seed: int, shard_index: int) -> torch.Generator:
    """A CPU generator whose seed mixes (seed, shard_index) through numpy's SeedSequence."""
    state = np.random.SeedSequence([seed, shard_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
