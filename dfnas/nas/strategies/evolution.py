"""The SPOS evolutionary search (Guo et al. 2019, `Search/search.py`) over integer-coded paths.

Each generation evaluates its new candidates, keeps the `top_k` best of everything seen, and
breeds the next: `mutations` children of random top-k parents (each gene redrawn with probability
`mutation_prob`), `crossovers` children taking each gene from one of two random top-k parents,
and random paths to fill the population. A child is admitted only if it is new and within the
FLOPs limit; each kind gets 10 tries per wanted child, as in the reference. The answer is the
best candidate ever evaluated. All randomness comes from one `torch.Generator`, part of the state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from dfnas.config import option

Path = tuple[int, ...]


@dataclass
class EvolutionConfig:
    population: int = option(50, "evolution: candidates per generation", min=1)
    top_k: int = option(10, "evolution: parents kept from each generation", min=1)
    generations: int = option(20, "evolution: generations", min=1)
    mutations: int = option(25, "evolution: children made by mutation per generation", min=0)
    crossovers: int = option(25, "evolution: children made by crossover per generation", min=0)
    mutation_prob: float = option(0.1, "evolution: probability that a mutation changes each choice", min=0, max=1)

    def check(self) -> None:
        if not 1 <= self.top_k <= self.population:
            raise ValueError(f"top_k must be in 1..population ({self.population}), got {self.top_k}")
        if self.mutations + self.crossovers > self.population:
            raise ValueError("mutations + crossovers must not exceed the population")


@dataclass(frozen=True)
class Evaluated:
    path: Path
    fitness: float
    mflops: float
    generation: int

    def to_dict(self) -> dict:
        return {"path": list(self.path), "fitness": self.fitness, "mflops": self.mflops,
                "generation": self.generation}


class Evolution:
    """GA state over paths of `num_layers` genes in 0..num_choices-1, constrained by `mflops`."""

    def __init__(self, config: EvolutionConfig, num_layers: int, num_choices: int,
                 mflops: Callable[[Path], float], flops_limit: float | None, seed: int):
        config.check()
        self.config = config
        self.num_layers = num_layers
        self.num_choices = num_choices
        self.mflops = mflops
        self.flops_limit = flops_limit
        self.generator = torch.Generator().manual_seed(seed)
        self.archive: dict[Path, Evaluated] = {}
        self.candidates: list[Path] = []
        self.generation = 0
        self.candidates = self._fill([], config.population)

    def legal(self, path: Path, pending: list[Path]) -> bool:
        within = self.flops_limit is None or self.mflops(path) <= self.flops_limit
        return within and path not in self.archive and path not in pending

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (), generator=self.generator))

    def _random_path(self) -> Path:
        return tuple(int(k) for k in torch.randint(self.num_choices, (self.num_layers,), generator=self.generator))

    def _fill(self, pending: list[Path], size: int) -> list[Path]:
        tries = 10 * size
        while len(pending) < size and tries > 0:
            tries -= 1
            path = self._random_path()
            if self.legal(path, pending):
                pending.append(path)
        return pending

    def top(self, k: int | None = None) -> list[Evaluated]:
        """The k best evaluated paths (ties: fewer FLOPs, then the smaller path)."""
        ranked = sorted(self.archive.values(), key=lambda e: (-e.fitness, e.mflops, e.path))
        return ranked[: k or self.config.top_k]

    def best(self) -> Evaluated:
        return self.top(1)[0]

    def evaluate_generation(self, fitness: Callable[[Path], float],
                            progress: Callable[[int], None] = lambda n: None) -> list[Evaluated]:
        """Evaluate this generation's candidates, then breed the next one (unless it was the last)."""
        if not self.candidates and not self.archive:
            raise ValueError("no architecture of this space satisfies the FLOPs limit")
        evaluated = []
        for path in self.candidates:
            entry = Evaluated(path, float(fitness(path)), self.mflops(path), self.generation)
            self.archive[path] = entry
            evaluated.append(entry)
            progress(1)
        self.generation += 1
        if self.generation < self.config.generations:
            self.candidates = self._breed()
        else:
            self.candidates = []
        return evaluated

    def _breed(self) -> list[Path]:
        parents = [e.path for e in self.top()]
        pending: list[Path] = []
        for wanted, make in ((self.config.mutations, self._mutate), (self.config.crossovers, self._cross)):
            target, tries = len(pending) + wanted, 10 * wanted
            while len(pending) < target and tries > 0:
                tries -= 1
                child = make(parents)
                if self.legal(child, pending):
                    pending.append(child)
        return self._fill(pending, self.config.population)

    def _mutate(self, parents: list[Path]) -> Path:
        parent = parents[self._randint(len(parents))]
        redraw = torch.rand(self.num_layers, generator=self.generator) < self.config.mutation_prob
        fresh = torch.randint(self.num_choices, (self.num_layers,), generator=self.generator)
        return tuple(int(f) if r else g for g, r, f in zip(parent, redraw.tolist(), fresh))

    def _cross(self, parents: list[Path]) -> Path:
        first = parents[self._randint(len(parents))]
        second = parents[self._randint(len(parents))]
        pick = torch.rand(self.num_layers, generator=self.generator) < 0.5
        return tuple(b if p else a for a, b, p in zip(first, second, pick.tolist()))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "generation": self.generation,
                "candidates": [list(p) for p in self.candidates],
                "archive": [e.to_dict() for e in self.archive.values()]}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.generation = int(state["generation"])
        self.candidates = [tuple(p) for p in state["candidates"]]
        self.archive = {tuple(e["path"]): Evaluated(tuple(e["path"]), e["fitness"], e["mflops"],
                                                    e["generation"]) for e in state["archive"]}
