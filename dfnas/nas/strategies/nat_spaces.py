"""The spaces NAT searches and how an architecture of each is a genome.

A genome is one integer per decision: layer i of the SPOS space (0..3, the block), block i of
the ProxylessNAS space (an index into `ProxylessConfig.block_candidates()[i]`: kernel x
expansion, plus `zero` on blocks with an identity shortcut, so 6 or 7 choices). In both spaces
that index is the layout slot's candidate index, so the cost tables of `dfnas.nas.profile` cost a
genome directly, and the supernet's `forward(x, genome)` runs it. The per-decision choice counts
(`PathEncoding.counts`) bound the genome for sampling, NSGA-II and the predictors' one-hot blocks.

The DARTS cell is not a NAT space: see docs/search.md ("NAT", "Why not the DARTS cell").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dfnas.device import Precision
from dfnas.nas.arch import Architecture, make_architecture
from dfnas.nas.profile import CostTable
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces import get_space
from dfnas.nas.strategies.spos import SposSearch, SposSearchConfig

NAT_SPACES = ("spos", "proxyless")


@dataclass(frozen=True)
class PathEncoding:
    """Genomes of `space` at `config`: `counts[i]` choices at decision i."""

    space: str
    config: Any
    counts: tuple[int, ...]

    @classmethod
    def of(cls, space: str, config: Any) -> "PathEncoding":
        return cls(space, config, tuple(len(slot.candidates) for slot in get_space(space).layout(config).slots))

    @property
    def num_layers(self) -> int:
        return len(self.counts)

    def sample(self, generator: torch.Generator) -> tuple[int, ...]:
        """A uniform random genome: one draw per decision (for SPOS the same numbers as one
        `torch.randint(4, (layers,))`, the stream the SPOS-only NAT drew)."""
        return tuple(int(torch.randint(count, (1,), generator=generator)) for count in self.counts)

    def choices(self, path: tuple[int, ...]) -> Any:
        """The space's own `choices` (what the architecture file holds)."""
        if self.space == "spos":
            return tuple(int(k) for k in path)
        return [names[k] for names, k in zip(self.config.block_candidates(), path)]

    def architecture(self, path: tuple[int, ...], latency_table: CostTable | None = None) -> Architecture:
        return make_architecture(self.space, self.config, self.choices(path), latency_table=latency_table)


def build_supernet(space: str, config: SposSearchConfig, data: SearchData, precision: Precision) -> Any:
    """The supernet of `space` with its single-path trainer and evaluator: `SposSearch` itself for
    SPOS, `ProxylessUniformSupernet` (the same interface) for ProxylessNAS."""
    if space == "spos":
        return SposSearch(config, data, precision)
    if space == "proxyless":
        from dfnas.nas.strategies.nat_supernet import ProxylessUniformSupernet

        return ProxylessUniformSupernet(config, data, precision)
    raise ValueError(f"NAT searches the spaces {', '.join(NAT_SPACES)}; got {space!r}")
