"""The settings of a NAT search (`NatSearchConfig`) and its tiny preset (`NAT_TINY`); see nat.py."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dfnas.config import option
from dfnas.nas.strategies.base import SearchConfig
from dfnas.nas.strategies.evolution import EvolutionConfig
from dfnas.nas.strategies.nat_predictors import PREDICTOR_NAMES
from dfnas.nas.strategies.nat_spaces import NAT_SPACES
from dfnas.nas.strategies.spos import SposSearchConfig

OBJECTIVES = ("macs", "params", "latency")


def parse_names(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [n for n in names if n not in allowed]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"{what} must be a comma-separated list of distinct names from {', '.join(allowed)}; "
                         f"got {value!r}")
    return names


@dataclass
class NatSearchConfig(SearchConfig):
    space: str = option("spos", "search space: spos (ShuffleNetV2 blocks) or proxyless (MBConv kernel x expansion, "
                                "zero where a block has a shortcut)", choices=NAT_SPACES)
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
    latency_table: str | None = option(None, "latency table JSON of the searched space at this size (not set: "
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
        self.predictor_names()
        if self.picks > self.nsga_population:
            raise ValueError(f"picks ({self.picks}) must not exceed nsga_population ({self.nsga_population})")

    def objective_names(self) -> tuple[str, ...]:
        return parse_names(self.objectives, OBJECTIVES, "objectives")

    def predictor_names(self) -> tuple[str, ...]:
        return parse_names(self.predictors, PREDICTOR_NAMES, "predictors")

    def limits(self) -> dict[str, float]:
        given = {"macs": self.max_macs, "params": self.max_params, "latency": self.max_latency}
        return {name: value for name, value in given.items() if value is not None}

    def spos_config(self) -> SposSearchConfig:
        """The supernet's settings, in either space. Only SposSearch's supernet, trainer and
        evaluator are used; its own evolution is never run, so it gets the smallest one."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SposSearchConfig)
                  if f.name in {g.name for g in dataclasses.fields(self)}}
        unused = EvolutionConfig(population=1, top_k=1, generations=1, mutations=0, crossovers=0)
        return SposSearchConfig(**shared, evolution=unused)


# About a minute on the shared 2-core CPU (MNIST, one thread: 70 s at load ~5): 600 warm-start
# steps of 64, 12 initial architectures, 4 iterations of 4 picks with 100 adaptation steps and a
# rescoring of the archive each; the supernet's probe paths reach val accuracy 0.83 after the warm
# start, the best front member 0.90, the hypervolume rises 0.856 -> 0.921.
NAT_TINY = {"epochs": 6, "steps_per_epoch": 100, "batch_size": 64, "lr": 0.2, "calib_batches": 4,
            "calib_batch_size": 64, "val_batch_size": 250, "initial_samples": 12, "iterations": 4, "picks": 4,
            "cv_folds": 5, "nsga_population": 24, "nsga_generations": 10, "adapt_epochs": 1, "adapt_lr": 0.02}
