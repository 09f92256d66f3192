"""Neural Architecture Transfer (Lu et al. 2021; MSuNAS search), data-free, on the SPOS or the
ProxylessNAS space (`space`; genomes and supernets per space in `nat_spaces`).

Units, checkpointed one by one like every strategy:
1. `epochs` warm-start epochs: supernet training on uniform single paths (`SposSearch` itself,
   or `nat_supernet.ProxylessUniformSupernet`);
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

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dfnas.device import Precision
from dfnas.files import atomic_write_json
from dfnas.nas.arch import Architecture
from dfnas.nas.profile import CostTable
from dfnas.nas.search_data import SearchData
from dfnas.nas.strategies.nat_archive import COST_UNITS, Archive, Member
from dfnas.nas.strategies.nat_config import NatSearchConfig
from dfnas.nas.strategies.nat_costs import Costs, latency_table
from dfnas.nas.strategies.nat_front import hypervolume, non_dominated, spread_picks
from dfnas.nas.strategies.nat_nsga import nsga2
from dfnas.nas.strategies.nat_predictors import (Regressor, kendall_tau, make_predictor, one_blas_thread, one_hot,
                                                 select_predictor)
from dfnas.nas.strategies.nat_spaces import PathEncoding, build_supernet

SAMPLING_TRIES = 100  # uniform draws per wanted architecture before giving up


class NatSearch:
    name = "nat"
    unit_name = "unit"

    def __init__(self, config: NatSearchConfig, data: SearchData, precision: Precision):
        config.check()
        self.config = config
        self.supernet = build_supernet(config.space, config.spos_config(), data, precision)
        self.notices = self.supernet.notices
        self.model: nn.Module = self.supernet.model
        self.metric = self.supernet.metric
        self.num_classes = data.num_classes
        self.space_config = self.supernet.space_config
        self.encoding = PathEncoding.of(config.space, self.space_config)
        objectives, limits = config.objective_names(), config.limits()
        latency = (latency_table(config.latency_table, config.space, self.space_config, precision.device)
                   if "latency" in objectives or "latency" in limits else None)
        self.costs = Costs(config.space, self.space_config, objectives, limits, latency)
        self.generator = torch.Generator().manual_seed(config.seed + 7)
        self.archive = Archive()
        self.history: list[dict] = []  # per archive state: iteration, hypervolume, predictor tau
        self.num_units = config.epochs + 1 + config.iterations

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

    def _evaluate(self, paths: list[tuple[int, ...]]) -> list[dict[str, float]]:
        """Exact scores of `paths`, in order (under torchrun the ranks share them out)."""
        return self.supernet.evaluator.score_each([self.supernet.path_forward(path) for path in paths])

    def _initial_archive(self, progress: Callable[[int], None]) -> dict:
        first = self.costs.objectives[0]
        paths: list[tuple[int, ...]] = []
        for path in (self.costs.extreme_path(first, np.argmin), self.costs.extreme_path(first, np.argmax)):
            if self.costs.feasible(path) and path not in paths:
                paths.append(path)
        paths += self._random_paths(self.config.initial_samples - len(paths), paths)
        if len(paths) < 3:
            raise ValueError(f"only {len(paths)} architectures satisfy the constraints "
                             f"{self.costs.limits}; the predictors need at least 3 (loosen them)")
        for path, scores in zip(paths, self._evaluate(paths)):
            self.archive.add(Member(path, scores["agreement"], scores["kl"], self.costs.of_path(path), 0))
            progress(1)
        return {"phase": "initial archive", "evaluated": len(paths), "hv_reference": self.costs.bounds.to_dict(),
                **self._close_unit(0, None)}

    def _iteration(self, iteration: int, progress: Callable[[int], None]) -> dict:
        config = self.config
        features = one_hot(self.archive.paths(), self.encoding.counts)
        seed = config.seed + iteration
        factories = {name: (lambda name=name: make_predictor(name, seed)) for name in config.predictor_names()}
        selection = select_predictor(features, self.archive.agreements(), factories, config.cv_folds, seed)
        candidates, predicted = self._propose(selection.model, seed)
        picks = []
        for path, guess, scores in zip(candidates, predicted, self._evaluate(candidates)):
            self.archive.add(Member(path, scores["agreement"], scores["kl"], self.costs.of_path(path), iteration,
                                    guess))
            picks.append({"path": list(path), "predicted": guess, "agreement": scores["agreement"]})
            progress(1)
        adapt_loss = self._adapt(progress)
        if self._rescores():
            for index, scores in enumerate(self._evaluate([member.path for member in self.archive.members])):
                self.archive.rescore(index, scores["agreement"], scores["kl"])
                progress(1)
        return {"phase": "nat", "predictor": selection.name, "predictor_tau": selection.tau,
                "predictor_taus": selection.taus,
                "picks_tau": kendall_tau(np.array([p["agreement"] for p in picks]), np.array(predicted)),
                "adapt_loss": adapt_loss, "picks": picks, **self._close_unit(iteration, selection.tau)}

    def _propose(self, model: Regressor, seed: int) -> tuple[list[tuple[int, ...]], list[float]]:
        """`picks` new feasible architectures: the predicted front of NSGA-II's final population
        first, spread along the first cost, then its other members, then random ones."""
        counts = self.encoding.counts

        def objectives(genomes: np.ndarray) -> np.ndarray:
            error = 1.0 - model.predict(one_hot(genomes, counts))
            return np.stack([error, *(self.costs.of(genomes, c) for c in self.costs.objectives)], axis=1)

        front = self.archive.paths()[self.front()]
        with one_blas_thread():
            population = nsga2(self.encoding.num_layers, counts, objectives,
                               1 + len(self.costs.objectives), self.costs.violations if self.costs.limits else None,
                               len(self.costs.limits), front, self.config.nsga_population,
                               self.config.nsga_generations, seed)
        new_by_genome: dict[tuple[int, ...], int] = {}  # first population index of each new feasible genome
        for i, genome in enumerate(population.genomes):
            key = tuple(genome.tolist())
            if population.feasible[i] and key not in self.archive and key not in new_by_genome:
                new_by_genome[key] = i
        new = list(new_by_genome.values())
        predicted_front = [new[i] for i in non_dominated(population.objectives[new])] if new else []
        anchors = self.archive.objectives(self.costs.objectives)[self.front(), 1]
        chosen: list[int] = []
        for group in (predicted_front, [i for i in new if i not in predicted_front]):
            wanted = self.config.picks - len(chosen)
            spread = spread_picks(population.objectives[group, 1], [*anchors, *population.objectives[chosen, 1]],
                                  wanted)
            chosen += [group[k] for k in spread]
        paths = [tuple(int(k) for k in population.genomes[i]) for i in chosen]
        guesses = [float(1.0 - population.objectives[i, 0]) for i in chosen]
        for path in self._random_paths(self.config.picks - len(paths), paths):  # NSGA-II found too few new ones
            paths.append(path)
            guesses.append(float(model.predict(one_hot([path], counts))[0]))
        return paths, guesses

    def _rescores(self) -> bool:
        return self.config.rescore_archive and self._adapt_steps() > 0

    def _random_paths(self, count: int, taken: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Up to `count` uniform random feasible paths, new to the archive and to `taken`."""
        found: list[tuple[int, ...]] = []
        for _ in range(SAMPLING_TRIES * max(count, 0)):
            if len(found) == count:
                break
            path = self.encoding.sample(self.generator)
            if path not in taken and path not in found and path not in self.archive and self.costs.feasible(path):
                found.append(path)
        return found

    def _adapt_steps(self) -> int:
        return self.config.adapt_epochs * self.config.epoch_steps(self.supernet.stream.batches_per_epoch)

    def _adapt(self, progress: Callable[[int], None]) -> float | None:
        """Fine-tune the supernet on paths drawn per layer from the front's choice frequencies."""
        steps = self._adapt_steps()
        if not steps:
            return None
        front = self.archive.paths()[self.front()]
        # Padded to the widest layer: a layer's missing choices have count 0, so are never drawn.
        counts = torch.stack([torch.bincount(torch.from_numpy(front[:, layer]), minlength=max(self.encoding.counts))
                              for layer in range(front.shape[1])]).double()
        supernet = self.supernet
        for group in supernet.optimizer.param_groups:
            group["lr"] = self.config.adapt_lr
        self.model.train()
        losses = []
        for _ in range(steps):
            path = [int(k) for k in torch.multinomial(counts, 1, generator=self.generator).flatten()]
            losses.append(supernet.trainer.step(supernet.optimizer, lambda x, path=path: self.model(x, path),
                                                supernet.stream.next(), list(self.model.parameters())))
            progress(1)
        return sum(losses) / len(losses)

    def _close_unit(self, iteration: int, tau: float | None) -> dict:
        """Append the archive's hypervolume (and the predictor's tau) to the history; the log
        record's archive fields."""
        objectives = self.archive.objectives(self.costs.objectives)
        front = self.front()
        volume = hypervolume(objectives[front], self.costs.bounds)
        self.history.append({"iteration": iteration, "hypervolume": volume, "predictor_tau": tau})
        best = self.archive.members[max(front, key=lambda i: (self.archive.members[i].agreement, -i))]
        return {"hypervolume": volume, "archive_size": len(self.archive), "front_size": len(front),
                f"val_{self.metric}": best.agreement, "val_kl": best.kl,
                f"best_{self.costs.objectives[0]}": best.costs[self.costs.objectives[0]], "best_path": list(best.path)}

    # ------------------------------------------------------------------ state and results

    def state_dict(self) -> dict:
        return {"supernet": self.supernet.state_dict(), "generator": self.generator.get_state(),
                "archive": self.archive.to_list(), "history": [dict(h) for h in self.history],
                "latency_table": None if self.costs.latency is None else self.costs.latency.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.generator.set_state(state["generator"])
        self.archive = Archive.from_list(state["archive"])
        self.history = [dict(h) for h in state["history"]]
        if state["latency_table"] is not None:  # the measured table, not a new measurement
            costs = self.costs
            self.costs = Costs(costs.space, self.space_config, costs.objectives, costs.limits,
                               CostTable.from_dict(state["latency_table"]))

    def front(self) -> list[int]:
        return self.archive.front(self.costs.objectives)

    def chosen(self) -> int:
        """The front's member with the best score (ties: the cheaper by the first cost)."""
        return max(self.front(), key=lambda i: (self.archive.members[i].agreement,
                                                -self.archive.members[i].costs[self.costs.objectives[0]]))

    def _architecture(self, index: int) -> Architecture:
        return self.encoding.architecture(self.archive.members[index].path, latency_table=self.costs.latency)

    def architecture(self) -> Architecture:
        return self._architecture(self.chosen())

    def final_metrics(self) -> dict:
        """The chosen front member's val metric, front size and hypervolume; before the initial
        archive, the supernet's (its probe paths)."""
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
        written += self.archive.write(directory, self.costs.names, files)
        atomic_write_json(directory / "hypervolume.json", {**self.costs.bounds.to_dict(), "history": self.history})
        return written + [directory / "hypervolume.json"]

    def plot(self, directory: Path) -> list[Path]:
        from dfnas.nas.strategies.nat_plots import front_plot, progress_plot

        first = self.costs.objectives[0]
        members = self.archive.members
        front_path, progress_path = directory / "front.png", directory / "hypervolume.png"
        front_plot(front_path, [m.costs[first] for m in members], [m.agreement for m in members],
                   [m.iteration for m in members], self.front(), self.chosen(), self.costs.limits.get(first),
                   f"{first} ({COST_UNITS[first]})",
                   {"agreement": "val agreement with the teacher", "accuracy": "val accuracy"}[self.metric])
        progress_plot(progress_path, [h["iteration"] for h in self.history],
                      [h["hypervolume"] for h in self.history], [h["predictor_tau"] for h in self.history])
        return [front_path, progress_path]
