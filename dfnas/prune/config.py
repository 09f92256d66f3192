"""The settings of `dfnas-prune`: one typed dataclass (flags, TOML keys, help and checks from it).

The search's defaults follow MetaPruning (Liu et al. 2019): channel ratios 0.10-1.00 in steps of
0.03, a population evolved with top-k parents, mutation and crossover, candidates rejected before
scoring when outside the MACs band, scored after BatchNorm recalibration. The population and
generation counts are smaller than MetaPruning's 50 x 20 because a candidate here costs a
recalibration on the CPU (docs/prune.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from dfnas.config import UsageError, option
from dfnas.device import DEVICE_HELP

GUIDES = ("synthetic", "mnist")


@dataclass(frozen=True)
class PruneConfig:
    teacher: str = option("default", "the network to prune: 'default' (the bundled digit CNN) or 'pkg.module:factory' "
                                     "with --weights")
    weights: str | None = option(None, "weights file of --teacher")
    data: str | None = option(None, "synthetic dataset directory of this teacher (dfnas-synth): the only data used")
    target_macs: float | None = option(None, "MACs budget of the pruned network (per image; conv + linear multiplies)",
                                       above=0, max=1e15)
    ratio: float | None = option(None, "MACs budget as a fraction of the teacher's MACs (instead of --target-macs)",
                                 above=0, max=1)
    band: float = option(0.05, "candidates must use at least (1 - band) x the budget, as MetaPruning keeps a MACs band",
                         above=0, max=0.9)
    min_ratio: float = option(0.1, "smallest channel ratio a layer may keep", above=0, max=1)
    ratio_step: float = option(0.03, "step of the channel-ratio grid from --min-ratio to 1", above=0, max=1)
    pruning_net_steps: int = option(1000, "training steps of the PruningNet that gives every candidate its weights "
                                          "(0: candidates keep the teacher's magnitude-ranked weights)", min=0,
                                    max=10**8)
    pruning_net_lr: float = option(1e-3, "Adam learning rate of the PruningNet", above=0, max=10)
    population: int = option(32, "candidates per generation", min=4, max=10000)
    generations: int = option(12, "evolution generations (the first is random)", min=1, max=10000)
    parents: int = option(8, "top-k candidates that breed the next generation", min=2, max=10000)
    mutation_prob: float = option(0.1, "probability that a mutation changes each gene", above=0, max=1)
    calib_batches: int = option(4, "synthetic training batches that recalibrate BatchNorm before a candidate is scored",
                                min=1, max=100000)
    calib_batch_size: int = option(256, "batch size of the recalibration", min=2, max=65536)
    steps: int = option(1500, "distillation steps of the chosen network (and of the uniform baseline)", min=1,
                        max=10**8)
    batch_size: int = option(64, "distillation batch size", min=1, max=65536)
    lr: float = option(0.02, "peak distillation learning rate (SGD, cosine): small, the weights start from the teacher's",
                       above=0, max=100)
    temperature: float = option(3.0, "distillation temperature of the KL to the teacher's logits", above=0, max=1000)
    guide: str = option("synthetic", "images that score candidates: 'synthetic' (data-free) or 'mnist' (the real digits' "
                                     "train split: the real-data-guided search a data-free one is compared with; digit "
                                     "teachers only)", choices=GUIDES)
    baseline: bool = option(True, "also distill the uniform pruning at the same budget, for comparison")
    val_fraction: float = option(0.1, "fraction of the synthetic set held out to score candidates", above=0, max=0.9)
    seed: int = option(0, "random seed of the search and the distillation", min=0, max=2**63 - 1)
    device: str = option("auto", DEVICE_HELP)
    threads: int = option(0, "CPU threads for torch (0: torch's default)", min=0, max=4096)

    def check(self) -> None:
        if not self.data:
            raise UsageError("--data is required: the teacher's synthetic dataset directory (dfnas-synth)")
        if (self.target_macs is None) == (self.ratio is None):
            raise UsageError("give exactly one budget: --target-macs M or --ratio R (a fraction of the teacher's MACs)")
        if self.parents > self.population:
            raise UsageError(f"--parents {self.parents} is more than --population {self.population}")

    def ratio_grid(self) -> tuple[float, ...]:
        """min_ratio, min_ratio + step, ..., up to 1 (always included)."""
        count = int((1.0 - self.min_ratio) / self.ratio_step + 1e-9)
        grid = [round(self.min_ratio + i * self.ratio_step, 6) for i in range(count + 1)]
        return tuple(grid) if grid[-1] == 1.0 else (*grid, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)
