"""Neural Architecture Transfer (Lu et al. 2021; MSuNAS search), data-free, on the SPOS space.

Units, checkpointed one by one like every strategy:
1. `epochs` warm-start epochs: SPOS supernet training (uniform paths), by `SposSearch` itself;
2. the initial archive: `initial_samples` architectures (the cheapest and dearest by the first
   cost, then uniform random ones within the constraints), each scored exactly (BN
   recalibration, then val agreement: `PathEvaluator`), costs from the layout tables;
3. `iterations` NAT iterations, each: fit every predictor of the pool on the archive and keep
   the one with the best cross-validated Kendall tau (`nat_predictors`); NSGA-II on [predicted
   error, exact costs] under the constraints, seeded with the archive's front (`nat_nsga`);
   evaluate `picks` new architectures of the predicted front spread along the first cost
   (`nat_front.spread_picks`); adapt the supernet for `adapt_epochs` on paths drawn from the
   per-layer choice frequencies of the archive's front (NAT's distribution); rescore the archive
   under the adapted weights; record the hypervolume (fixed reference, `nat_front`).
The result is the archive's front (every member exact, none predicted) and, as
`architecture()`, its member with the best score.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dfnas.config import option
from dfnas.device import Precision
from dfnas.files import atomic_write_json
from dfnas.nas.arch import Architecture, make_architecture
from dfnas.nas.profile import CostTable, build_latency_table, cost_table
from dfnas.nas.search_data import SearchData
from dfnas.nas.strategies.base import SearchConfig
from dfnas.nas.strategies.evolution import EvolutionConfig
from dfnas.nas.strategies.nat_archive import COST_UNITS, Archive, Member
from dfnas.nas.strategies.nat_front import ObjectiveBounds, hypervolume, non_dominated, spread_picks
from dfnas.nas.strategies.nat_nsga import nsga2
from dfnas.nas.strategies.nat_predictors import (PREDICTOR_NAMES, kendall_tau, make_predictor, one_hot,
                                                 select_predictor)
from dfnas.nas.strategies.spos import SposSearch, SposSearchConfig

OBJECTIVES = ("macs", "params", "latency")
SCALES = {"macs": 1e-6, "params": 1e-6, "latency": 1.0}  # table units -> COST_UNITS
SAMPLING_TRIES = 100  # uniform draws per wanted initial architecture before giving up


def _names(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [n for n in names if n not in allowed]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"{what} must be a comma-separated list of distinct names from {', '.join(allowed)}; "
                         f"got {value!r}")
    return names


@dataclass
class NatSearchConfig(SearchConfig):
    # The supernet: SPOS's settings (see spos.py), used for the warm start and the adaptation.
    epochs: int = option(120, "warm-start supernet epochs (SPOS training, uniform paths)", min=1, max=100000)
    batch_size: int = option(1024, "training batch size", min=1, max=65536)
    lr: float = option(0.5, "SGD learning rate of the warm start (linear decay to 0)", above=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=0.9999)
    weight_decay: float = option(4e-5, "weight decay", min=0)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy terms", min=0, max=0.999)
    grad_clip: float = option(0.0, "clip the weights' gradient norm to this (0 = off)", min=0)
    calib_batches: int = option(200, "batches that recalibrate BN of each architecture before it is scored", min=1)
    calib_batch_size: int = option(128, "batch size of the BN recalibration", min=1)
    val_batch_size: int = option(200, "batch size of the val scoring", min=1)
    # The search.
    objectives: str = option("macs", "costs minimized beside the error, comma-separated: macs (MMACs), params "
                                     "(millions), latency (ms, from --latency-table or measured here)")
    max_macs: float | None = option(None, "constraint: largest MMACs of an architecture (not set: none)", above=0)
    max_params: float | None = option(None, "constraint: most parameters, in millions (not set: none)", above=0)
    max_latency: float | None = option(None, "constraint: largest latency in ms (not set: none)", above=0)
    latency_table: str | None = option(None, "latency table JSON of the spos space at this size (not set: "
                                             "measured on this device when latency is used)")
    initial_samples: int = option(100, "architectures evaluated before the first iteration", min=3)
    iterations: int = option(30, "NAT iterations", min=1)
    picks: int = option(8, "architectures evaluated exactly per iteration", min=1)
    predictors: str = option(",".join(PREDICTOR_NAMES), "accuracy predictors tried each iteration (the best "
                                                         "cross-validated Kendall tau is used), comma-separated")
    cv_folds: int = option(10, "folds of the predictors' cross-validation", min=2)
    nsga_population: int = option(40, "NSGA-II population", min=4)
    nsga_generations: int = option(20, "NSGA-II generations per iteration", min=1)
    adapt_epochs: int = option(5, "supernet adaptation epochs per iteration on paths drawn from the front "
                                  "(0 = a fixed supernet, as MSuNAS)", min=0)
    adapt_lr: float = option(0.01, "constant SGD learning rate of the adaptation", above=0)
    rescore_archive: bool = option(True, "rescore the whole archive after each adaptation (scores measured under "
                                         "other weights go stale)")

    def check(self) -> None:
        super().check()
        self.objective_names()
        _names(self.predictors, PREDICTOR_NAMES, "predictors")
        if self.picks > self.nsga_population:
            raise ValueError(f"picks ({self.picks}) must not exceed nsga_population ({self.nsga_population})")

    def objective_names(self) -> tuple[str, ...]:
        return _names(self.objectives, OBJECTIVES, "objectives")

    def limits(self) -> dict[str, float]:
        given = {"macs": self.max_macs, "params": self.max_params, "latency": self.max_latency}
        return {name: value for name, value in given.items() if value is not None}

    def spos_config(self) -> SposSearchConfig:
        """The supernet's settings. Only SposSearch's supernet, trainer and evaluator are used; its
        own evolution is never run, so it gets the smallest one."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SposSearchConfig)
                  if f.name in {g.name for g in dataclasses.fields(self)}}
        unused = EvolutionConfig(population=1, top_k=1, generations=1, mutations=0, crossovers=0)
        return SposSearchConfig(**shared, evolution=unused)


# About two minutes on a busy 2-core CPU (MNIST, one thread; 125 s at load ~5): 600 warm-start steps
# of 64, 12 initial architectures, 4 iterations of 4 picks with 100 adaptation steps and a rescoring
# of the archive each; the best front member reached val accuracy 0.92.
NAT_TINY = {"epochs": 6, "steps_per_epoch": 100, "batch_size": 64, "lr": 0.2, "calib_batches": 4,
            "calib_batch_size": 64, "val_batch_size": 250, "initial_samples": 12, "iterations": 4, "picks": 4,
            "cv_folds": 5, "nsga_population": 24, "nsga_generations": 10, "adapt_epochs": 1, "adapt_lr": 0.02}


class NatSearch:
    name = "nat"
    unit_name = "unit"

    def __init__(self, config: NatSearchConfig, data: SearchData, precision: Precision):
        config.check()
        self.config = config
        self.costs = config.objective_names()
        self.limits = config.limits()
        self.supernet = SposSearch(config.spos_config(), data, precision)
        self.notices = self.supernet.notices
        self.model: nn.Module = self.supernet.model
        self.metric = self.supernet.metric
        self.num_classes = data.num_classes
        self.space_config = self.supernet.space_config
        uses_latency = "latency" in self.costs or "latency" in self.limits
        self.latency: CostTable | None = self._latency_table(precision) if uses_latency else None
        self.matrices = {name: self._cost_matrix(name) for name in OBJECTIVES if name != "latency" or uses_latency}
        self._check_limits()
        self.bounds = ObjectiveBounds(tuple((self._extreme(c, min), self.limits.get(c, self._extreme(c, max)))
                                            for c in self.costs))
        self.generator = torch.Generator().manual_seed(config.seed + 7)
        self.archive = Archive()
        self.history: list[dict] = []  # per archive state: iteration, hypervolume, predictor tau
        self.num_units = config.epochs + 1 + config.iterations

    # ------------------------------------------------------------------ costs and constraints

    def _latency_table(self, precision: Precision) -> CostTable:
        if self.config.latency_table is None:
            return build_latency_table("spos", self.space_config, precision.device)
        table = CostTable.load(self.config.latency_table)
        expected = cost_table("spos", self.space_config)
        if table.space != "spos" or table.metric != "latency_ms" or table.config != expected.config:
            raise ValueError(f"latency table {self.config.latency_table} is for {table.space}/{table.metric} at "
                             f"another size; make one with dfnas.nas.profile.build_latency_table('spos', ...)")
        return table

    def _cost_matrix(self, name: str) -> tuple[float, np.ndarray]:
        """(fixed cost, layers x choices slot costs) in COST_UNITS: a genome's cost is a sum."""
        table = self.latency if name == "latency" else cost_table("spos", self.space_config, name)
        slots = np.array([list(slot.values()) for slot in table.slots], dtype=float)
        return table.fixed_total * SCALES[name], slots * SCALES[name]

    def cost_of(self, genomes: np.ndarray, name: str) -> np.ndarray:
        fixed, slots = self.matrices[name]
        genomes = np.asarray(genomes, dtype=np.int64).reshape(-1, slots.shape[0])
        return fixed + slots[np.arange(slots.shape[0]), genomes].sum(axis=1)

    def _extreme(self, name: str, pick: Callable) -> float:
        fixed, slots = self.matrices[name]
        return float(fixed + sum(pick(row) for row in slots))

    def _extreme_path(self, name: str, pick: Callable) -> tuple[int, ...]:
        return tuple(int(pick(row)) for row in self.matrices[name][1])

    def _check_limits(self) -> None:
        for name, limit in self.limits.items():
            low, high = self._extreme(name, min), self._extreme(name, max)
            if limit < low:
                raise ValueError(f"max_{name} {limit:.4g} {COST_UNITS[name]} is impossible: this space's "
                                 f"architectures have {low:.4g} to {high:.4g} {COST_UNITS[name]}")

    def violations(self, genomes: np.ndarray) -> np.ndarray:
        """(n, constraints): cost - limit per constraint, feasible where <= 0."""
        return np.stack([self.cost_of(genomes, n) - v for n, v in self.limits.items()], axis=1)

    def feasible(self, path: tuple[int, ...]) -> bool:
        return not self.limits or bool((self.violations(np.array([path])) <= 0).all())

    def member_costs(self, path: tuple[int, ...]) -> dict[str, float]:
        return {name: float(self.cost_of(np.array([path]), name)[0]) for name in self.matrices}

    # ------------------------------------------------------------------ the strategy interface

    def probe_forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return self.supernet.probe_forward(model, images)

    def unit_steps(self, unit: int) -> int:
        if unit < self.config.epochs:
            return self.supernet.unit_steps(unit)
        if unit == self.config.epochs:
            return self.config.initial_samples
        rescoring = len(self.archive) + self.config.picks if self._rescores() else 0
        return self.config.picks + self._adapt_steps() + rescoring

    def run_unit(self, unit: int, progress: Callable[[int], None]) -> dict:
        if unit < self.config.epochs:
            return self.supernet.run_unit(unit, progress)
        if unit == self.config.epochs:
            return self._initial_archive(progress)
        return self._iteration(unit - self.config.epochs, progress)

    # ------------------------------------------------------------------ the units

    def _evaluate(self, path: tuple[int, ...]) -> dict[str, float]:
        return self.supernet.evaluator(lambda x: self.model(x, path))

    def _initial_archive(self, progress: Callable[[int], None]) -> dict:
        first = self.costs[0]
        paths: list[tuple[int, ...]] = []
        for path in (self._extreme_path(first, np.argmin), self._extreme_path(first, np.argmax)):
            if self.feasible(path) and path not in paths:
                paths.append(path)
        layers, choices = self.space_config.num_layers, self.space_config.num_choices
        tries = SAMPLING_TRIES * self.config.initial_samples
        while len(paths) < self.config.initial_samples and tries > 0:
            tries -= 1
            path = tuple(int(k) for k in torch.randint(choices, (layers,), generator=self.generator))
            if path not in paths and self.feasible(path):
                paths.append(path)
        if len(paths) < 3:
            raise ValueError(f"only {len(paths)} architectures satisfy the constraints "
                             f"{self.limits}; the predictors need at least 3 (loosen them)")
        for path in paths:
            scores = self._evaluate(path)
            self.archive.add(Member(path, scores["agreement"], scores["kl"], self.member_costs(path), 0))
            progress(1)
        return {"phase": "initial archive", "evaluated": len(paths), "hv_reference": self.bounds.to_dict(),
                **self._close_unit(0, None)}

    def _iteration(self, iteration: int, progress: Callable[[int], None]) -> dict:
        config = self.config
        features = one_hot(self.archive.paths(), self.space_config.num_choices)
        names = _names(config.predictors, PREDICTOR_NAMES, "predictors")
        seed = config.seed + iteration
        factories = {name: (lambda name=name: make_predictor(name, seed)) for name in names}
        selection = select_predictor(features, self.archive.agreements(), factories, config.cv_folds, seed)
        candidates, predicted = self._propose(selection.model, seed)
        picks = []
        for path, guess in zip(candidates, predicted):
            scores = self._evaluate(path)
            self.archive.add(Member(path, scores["agreement"], scores["kl"], self.member_costs(path), iteration,
                                    guess))
            picks.append({"path": list(path), "predicted": guess, "agreement": scores["agreement"]})
            progress(1)
        adapt_loss = self._adapt(progress)
        if self._rescores():
            for index, member in enumerate(list(self.archive.members)):
                scores = self._evaluate(member.path)
                self.archive.rescored(index, scores["agreement"], scores["kl"])
                progress(1)
        return {"phase": "nat", "predictor": selection.name, "predictor_tau": selection.tau,
                "predictor_taus": selection.taus,
                "picks_tau": kendall_tau(np.array([p["agreement"] for p in picks]), np.array(predicted)),
                "adapt_loss": adapt_loss, "picks": picks, **self._close_unit(iteration, selection.tau)}

    def _propose(self, model, seed: int) -> tuple[list[tuple[int, ...]], list[float]]:
        """`picks` new feasible architectures: the predicted front of NSGA-II's final population
        first, spread along the first cost, then its other members, then random ones."""
        num_choices = self.space_config.num_choices

        def objectives(genomes: np.ndarray) -> np.ndarray:
            error = 1.0 - model.predict(one_hot(genomes, num_choices))
            return np.stack([error, *(self.cost_of(genomes, c) for c in self.costs)], axis=1)

        front = self.archive.paths()[self.archive.front(self.costs)]
        population = nsga2(self.space_config.num_layers, num_choices, objectives, 1 + len(self.costs),
                           self.violations if self.limits else None, len(self.limits), front,
                           self.config.nsga_population, self.config.nsga_generations, seed)
        new_by_genome: dict[tuple[int, ...], int] = {}  # first population index of each new feasible genome
        for i, genome in enumerate(population.genomes):
            key = tuple(genome.tolist())
            if population.feasible[i] and key not in self.archive and key not in new_by_genome:
                new_by_genome[key] = i
        new = list(new_by_genome.values())
        predicted_front = [new[i] for i in non_dominated(population.objectives[new])] if new else []
        anchors = self.archive.objectives(self.costs)[self.archive.front(self.costs), 1]
        chosen: list[int] = []
        for group in (predicted_front, [i for i in new if i not in predicted_front]):
            wanted = self.config.picks - len(chosen)
            spread = spread_picks(population.objectives[group, 1], [*anchors, *population.objectives[chosen, 1]],
                                  wanted)
            chosen += [group[k] for k in spread]
        paths = [tuple(int(k) for k in population.genomes[i]) for i in chosen]
        guesses = [float(1.0 - population.objectives[i, 0]) for i in chosen]
        layers, choices = self.space_config.num_layers, num_choices
        tries = SAMPLING_TRIES * self.config.picks
        while len(paths) < self.config.picks and tries > 0:  # NSGA-II found too few new ones
            tries -= 1
            path = tuple(int(k) for k in torch.randint(choices, (layers,), generator=self.generator))
            if path not in paths and path not in self.archive and self.feasible(path):
                paths.append(path)
                guesses.append(float(model.predict(one_hot([path], choices))[0]))
        return paths, guesses

    def _rescores(self) -> bool:
        return self.config.rescore_archive and self._adapt_steps() > 0

    def _adapt_steps(self) -> int:
        return self.config.adapt_epochs * self.config.epoch_steps(self.supernet.stream.batches_per_epoch)

    def _adapt(self, progress: Callable[[int], None]) -> float | None:
        """Fine-tune the supernet on paths drawn per layer from the front's choice frequencies."""
        steps = self._adapt_steps()
        if not steps:
            return None
        front = self.archive.paths()[self.archive.front(self.costs)]
        counts = torch.stack([torch.bincount(torch.from_numpy(front[:, layer]), minlength=self.space_config.num_choices)
                              for layer in range(front.shape[1])]).double()
        spos = self.supernet
        for group in spos.optimizer.param_groups:
            group["lr"] = self.config.adapt_lr
        self.model.train()
        losses = []
        for _ in range(steps):
            path = [int(k) for k in torch.multinomial(counts, 1, generator=self.generator).flatten()]
            losses.append(spos.trainer.step(spos.optimizer, lambda x, path=path: self.model(x, path),
                                            spos.stream.next(), list(self.model.parameters())))
            progress(1)
        return sum(losses) / len(losses)

    def _close_unit(self, iteration: int, tau: float | None) -> dict:
        """Append the archive's hypervolume (and the predictor's tau) to the history; the log
        record's archive fields."""
        objectives = self.archive.objectives(self.costs)
        front = self.archive.front(self.costs)
        volume = hypervolume(objectives[front], self.bounds)
        self.history.append({"iteration": iteration, "hypervolume": volume, "predictor_tau": tau})
        best = self.archive.members[max(front, key=lambda i: (self.archive.members[i].agreement, -i))]
        return {"hypervolume": volume, "archive_size": len(self.archive), "front_size": len(front),
                f"val_{self.metric}": best.agreement, "val_kl": best.kl,
                f"best_{self.costs[0]}": best.costs[self.costs[0]], "best_path": list(best.path)}

    # ------------------------------------------------------------------ state and results

    def state_dict(self) -> dict:
        return {"supernet": self.supernet.state_dict(), "generator": self.generator.get_state(),
                "archive": self.archive.to_list(), "history": [dict(h) for h in self.history],
                "latency_table": None if self.latency is None else self.latency.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.generator.set_state(state["generator"])
        self.archive = Archive.from_list(state["archive"])
        self.history = [dict(h) for h in state["history"]]
        if state["latency_table"] is not None:  # the measured one, not a new measurement
            self.latency = CostTable.from_dict(state["latency_table"])
            self.matrices["latency"] = self._cost_matrix("latency")

    def front(self) -> list[int]:
        return self.archive.front(self.costs)

    def chosen(self) -> int:
        """The front's member with the best score (ties: the cheaper by the first cost)."""
        return max(self.front(), key=lambda i: (self.archive.members[i].agreement,
                                                -self.archive.members[i].costs[self.costs[0]]))

    def _architecture(self, index: int) -> Architecture:
        return make_architecture("spos", self.space_config, self.archive.members[index].path,
                                 latency_table=self.latency)

    def architecture(self) -> Architecture:
        return self._architecture(self.chosen())

    def final_metrics(self) -> dict:
        """The chosen front member's val metric, front size and hypervolume; before the initial
        archive, SposSearch's (its supernet probe paths)."""
        if not len(self.archive):
            return self.supernet.final_metrics()
        best = self.archive.members[self.chosen()]
        return {"metric": self.metric, self.metric: best.agreement, "agreement": best.agreement, "kl": best.kl,
                "num_classes": self.num_classes, "measured_on": "the best architecture of the front",
                "front_size": len(self.front()), "hypervolume": self.history[-1]["hypervolume"]}

    def write_results(self, directory: Path) -> list[Path]:
        """front/NN.json (the front by increasing first cost), archive.json, archive.csv."""
        folder = directory / "front"
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.json"):
            stale.unlink()
        files: dict[int, str] = {}
        for rank, index in enumerate(self.front()):
            files[index] = f"front/{rank:02d}.json"
            self._architecture(index).save(directory / files[index])
        written = [directory / f for f in files.values()]
        written += self.archive.write(directory, list(self.matrices), files)
        atomic_write_json(directory / "hypervolume.json", {**self.bounds.to_dict(), "history": self.history})
        return written + [directory / "hypervolume.json"]

    def plot(self, directory: Path) -> list[Path]:
        from dfnas.nas.strategies.nat_plots import front_plot, progress_plot

        first = self.costs[0]
        members = self.archive.members
        front_path, progress_path = directory / "front.png", directory / "hypervolume.png"
        front_plot(front_path, [m.costs[first] for m in members], [m.agreement for m in members],
                   [m.iteration for m in members], self.front(), self.chosen(), self.limits.get(first),
                   f"{first} ({COST_UNITS[first]})",
                   {"agreement": "val agreement with the teacher", "accuracy": "val accuracy"}[self.metric])
        progress_plot(progress_path, [h["iteration"] for h in self.history],
                      [h["hypervolume"] for h in self.history], [h["predictor_tau"] for h in self.history])
        return [front_path, progress_path]
