"""Evolutionary search over channel-ratio vectors under a MACs budget (MetaPruning's procedure).

A genome is one index into the ratio grid per prunable group. Only genomes whose pruned network
uses between (1 - band) x budget and budget MACs are ever scored: random ones are drawn in the band
directly (a random shape, scaled by bisection until its MACs land in it), children outside it are
rejected before scoring. Each generation breeds from the top-k of everything scored so far:
half mutations (each gene redrawn with `mutation_prob`), half uniform crossovers, the rest random.
Scores are cached by genome. The state after each generation is a plain dict, so a killed search
resumes from its last generation and ends exactly where an uninterrupted one would.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from dfnas.prune.score import Score

Genome = tuple[int, ...]
TRIES = 50  # draws per wanted candidate before a generation is left short


@dataclass(frozen=True)
class Candidate:
    genome: Genome
    ratios: tuple[float, ...]
    macs: int
    score: Score

    def to_dict(self) -> dict:
        return {"genome": list(self.genome), "ratios": list(self.ratios), "macs": self.macs, **asdict(self.score)}

    @classmethod
    def from_dict(cls, data: dict) -> "Candidate":
        return cls(tuple(data["genome"]), tuple(data["ratios"]), int(data["macs"]),
                   Score(float(data["agreement"]), float(data["kl"])))


@dataclass(frozen=True)
class Budget:
    low: float
    high: float

    def holds(self, macs: float) -> bool:
        return self.low <= macs <= self.high


class RatioEvolution:
    """`macs_of(ratios)` and `score_of(ratios)` are the only contact with networks."""

    def __init__(self, grid: Sequence[float], genes: int, budget: Budget, macs_of: Callable[[Sequence[float]], int],
                 score_of: Callable[[Sequence[float]], Score], *, population: int, parents: int,
                 mutation_prob: float, seed: int):
        self.grid, self.genes, self.budget = tuple(grid), genes, budget
        self.macs_of, self.score_of = macs_of, score_of
        self.population, self.parents, self.mutation_prob = population, parents, mutation_prob
        self.rng = random.Random(seed)
        self.archive: dict[Genome, Candidate] = {}
        self.generations: list[list[Genome]] = []  # the genomes each generation added
        self._macs: dict[Genome, int] = {}

    def ratios(self, genome: Genome) -> tuple[float, ...]:
        return tuple(self.grid[g] for g in genome)

    def macs(self, genome: Genome) -> int:
        if genome not in self._macs:
            self._macs[genome] = self.macs_of(self.ratios(genome))
        return self._macs[genome]

    # ----------------------------------------------------------------- drawing genomes

    def _nearest(self, ratio: float) -> int:
        return min(range(len(self.grid)), key=lambda i: abs(self.grid[i] - ratio))

    def random_genome(self) -> Genome | None:
        """A random shape scaled into the budget band: ratios s * u_i on the grid, s by bisection."""
        shape = [self.rng.uniform(self.grid[0], 1.0) for _ in range(self.genes)]
        low, high = 0.0, 1.0 / max(shape)
        for _ in range(30):
            scale = (low + high) / 2
            genome = tuple(self._nearest(min(1.0, scale * u)) for u in shape)
            macs = self.macs(genome)
            if self.budget.holds(macs):
                return genome
            if macs > self.budget.high:
                high = scale
            else:
                low = scale
        return None

    def mutate(self, genome: Genome) -> Genome:
        return tuple(self.rng.randrange(len(self.grid)) if self.rng.random() < self.mutation_prob else g
                     for g in genome)

    def crossover(self, a: Genome, b: Genome) -> Genome:
        return tuple(x if self.rng.random() < 0.5 else y for x, y in zip(a, b))

    def _draw(self, make: Callable[[], Genome | None], count: int, taken: set[Genome]) -> list[Genome]:
        found: list[Genome] = []
        for _ in range(count * TRIES):
            if len(found) == count:
                break
            genome = make()
            if genome is not None and genome not in taken and self.budget.holds(self.macs(genome)):
                found.append(genome)
                taken.add(genome)
        return found

    # ----------------------------------------------------------------- generations

    def top(self, k: int) -> list[Candidate]:
        return sorted(self.archive.values(), key=lambda c: c.score.fitness, reverse=True)[:k]

    def next_generation(self) -> list[Genome]:
        taken = set(self.archive)
        if not self.archive:
            return self._draw(self.random_genome, self.population, taken)
        parents = [c.genome for c in self.top(self.parents)]
        half = self.population // 2
        children = self._draw(lambda: self.mutate(self.rng.choice(parents)), half, taken)
        children += self._draw(lambda: self.crossover(self.rng.choice(parents), self.rng.choice(parents)),
                               self.population - half, taken)
        children += self._draw(self.random_genome, self.population - len(children), taken)
        return children

    def step(self) -> list[Candidate]:
        """Draw, score and archive one generation; returns its candidates."""
        genomes = self.next_generation()
        if not genomes and not self.archive:
            raise ValueError("no channel-ratio vector reaches the MACs band; widen --band or change the budget")
        scored = []
        for genome in genomes:
            candidate = Candidate(genome, self.ratios(genome), self.macs(genome), self.score_of(self.ratios(genome)))
            self.archive[genome] = candidate
            scored.append(candidate)
        self.generations.append(genomes)
        return scored

    # ----------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        return {"archive": [c.to_dict() for c in self.archive.values()],
                "generations": [[list(g) for g in gen] for gen in self.generations],
                "rng": random_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        self.archive = {}
        for data in state["archive"]:
            candidate = Candidate.from_dict(data)
            self.archive[candidate.genome] = candidate
            self._macs[candidate.genome] = candidate.macs
        self.generations = [[tuple(g) for g in gen] for gen in state["generations"]]
        set_random_state(self.rng, state["rng"])


def random_state(rng: random.Random) -> list:
    """`rng`'s state as plain lists (checkpoints are loaded with weights_only=True)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_random_state(rng: random.Random, state: list) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def uniform_ratio(genes: int, macs_of: Callable[[Sequence[float]], int], budget: Budget) -> float:
    """The largest ratio r (to 1e-4) whose uniform pruning (every group keeps r) fits the budget."""
    low, high = 0.0, 1.0
    if macs_of([high] * genes) <= budget.high:
        return high
    while high - low > 1e-4:
        middle = (low + high) / 2
        if macs_of([max(middle, 1e-6)] * genes) <= budget.high:
            low = middle
        else:
            high = middle
    if low == 0.0:
        raise ValueError(f"even one channel per layer needs more than {budget.high:.0f} MACs")
    return low
