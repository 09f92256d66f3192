"""NAT's supernet on the ProxylessNAS space: single-path training with paths drawn uniformly per
block (SPOS's rule; OFA, whose supernet NAT adapts, also trains one random subnet per step once
every dimension is elastic, after progressive shrinking and with in-place distillation we omit).

`ProxylessUniformSupernet` is the ProxylessNAS counterpart of the parts of `SposSearch` that NAT
uses: the warm-start epochs (SGD, linear lr decay to 0, weight decay on conv/linear weights only;
the settings of `NatSearchConfig`), the optimizer, trainer, batch stream and `PathEvaluator` (exact
BN recalibration, then val agreement) that NAT's adaptation and scoring reuse, the probe paths
of the log, and the checkpoint. The ProxylessNAS strategy's own loop is not reused: it samples
paths from its architecture parameters and updates them, where NAT must train every path alike.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from dfnas.device import Precision
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.proxyless import ProxylessSupernet
from dfnas.nas.strategies.base import space_config
from dfnas.nas.strategies.health import fit_batch_to_split, metric_name
from dfnas.nas.strategies.nat_spaces import PathEncoding
from dfnas.nas.strategies.spos import (SUPERNET_PROBES, SposSearchConfig, load_single_path_state,
                                        single_path_state, single_path_training, train_single_path_epoch)


class ProxylessPathSupernet(ProxylessSupernet):
    """`ProxylessSupernet` called as the SPOS supernet: `forward(x, path)`, one candidate index
    per block in `config.block_candidates()` order. NAT's training, adaptation and scoring steps
    are then one code path for both spaces, and the path travels with the call (under a DDP
    wrapper too) instead of living in the edges between calls. Same parameters and state dict."""

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        path = [int(k) for k in path]  # accepts numpy/tensor ints from samplers
        edges = self.mixed_edges
        if len(path) != len(edges) or not all(0 <= k < len(e.candidates) for k, e in zip(path, edges)):
            raise ValueError(f"proxyless: path must be {len(edges)} ints, block i in 0..(its candidates - 1) "
                             f"({[len(e.candidates) for e in edges]}), got {path}")
        for edge, k in zip(edges, path):
            edge.active = k
        return super().forward(x)


class ProxylessUniformSupernet:
    """The ProxylessNAS supernet trained on uniform single paths; `SposSearch`'s supernet
    interface (`run_unit` of the warm-start epochs, `evaluator`, `trainer`, `optimizer`, `stream`,
    checkpoint) as `NatSearch` uses it."""

    name = "proxyless-uniform"

    def __init__(self, config: SposSearchConfig, data: SearchData, precision: Precision):
        config, notice = fit_batch_to_split(config, len(data.train))
        self.notices = [notice] if notice else []
        self.config = config
        self.metric = metric_name(data.soft_labels)
        self.num_classes = data.num_classes
        self.last_metrics: dict = {}  # the probe paths after the last epoch
        self.space_config = space_config("proxyless", config.space_preset, data)
        self.encoding = PathEncoding.of("proxyless", self.space_config)
        torch.manual_seed(config.seed)
        self.model: ProxylessPathSupernet = precision.prepare_model(ProxylessPathSupernet(self.space_config))
        (self.trainer, self.optimizer, self.stream, self.scheduler, self.sampler,
         self.evaluator) = single_path_training(self.model, config, data, precision)
        probes = torch.Generator().manual_seed(config.seed + 6)
        self.probe_paths = [self.encoding.sample(probes) for _ in range(SUPERNET_PROBES)]

    def probe_forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images, [0] * self.encoding.num_layers)

    def path_forward(self, path: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: self.model(x, path)

    def unit_steps(self, unit: int) -> int:
        return self.config.epoch_steps(self.stream.batches_per_epoch)

    def run_unit(self, unit: int, progress: Callable[[int], None]) -> dict:
        """Warm-start epoch `unit`: one uniform path per step, then the probe paths' scores."""
        return train_single_path_epoch(self, lambda: self.encoding.sample(self.sampler), unit, progress)

    def final_metrics(self) -> dict:
        """The probe paths' scores (before NAT's initial archive); empty before the first epoch."""
        if not self.last_metrics:
            return {}
        return {"metric": self.metric, self.metric: self.last_metrics["agreement"], **self.last_metrics,
                "num_classes": self.num_classes, "measured_on": f"{SUPERNET_PROBES} random paths of the supernet"}

    def state_dict(self) -> dict:
        return single_path_state(self)

    def load_state_dict(self, state: dict) -> None:
        load_single_path_state(self, state)
