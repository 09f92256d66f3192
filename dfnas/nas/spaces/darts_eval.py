"""The DARTS evaluation network built from a genotype (auxiliary head, drop path)."""
from __future__ import annotations

import torch
from torch import nn

from dfnas.nas.spaces.darts import (NUM_NODES, DartsConfig, DartsStem, as_genotype, cell_kinds,
                                    check_genotype, make_preprocess, stem_output)
from dfnas.nas.spaces.darts_ops import make_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability `drop_prob`, rescaling the survivors."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    def __init__(self, gene: list[tuple[str, int]], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = make_preprocess(c_pp, c, reduction_prev, affine=True)
        self.preprocess1 = make_preprocess(c_p, c, False, affine=True)
        self.inputs = [j for _, j in gene]
        self.ops = nn.ModuleList(make_op(op, c, 2 if reduction and j < 2 else 1, affine=True)
                                 for op, j in gene)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(NUM_NODES):
            total = None
            for position in (2 * node, 2 * node + 1):
                op = self.ops[position]
                h = op(states[self.inputs[position]])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat(states[2:], dim=1)


class AuxiliaryHead(nn.Module):
    """Classifier on the output of the 2/3-depth reduction cell (training only).

    The reference pools an 8x8 (CIFAR) or 14x14 (ImageNet) map with a fixed 5x5 window; pooling
    adaptively to 2x2 keeps the same parameters and works at any input size.
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DartsNetwork(nn.Module):
    """The network of a genotype. Set `drop_path_prob` per epoch (the reference ramps it
    linearly to 0.2). In training mode with `config.auxiliary`, `forward` returns
    `(logits, aux_logits)`; otherwise the logits."""

    def __init__(self, config: DartsConfig, genotype: object):
        super().__init__()
        check_genotype(config, genotype)
        genotype = as_genotype(genotype)
        self.config = config
        self.genotype = genotype
        self.drop_path_prob = 0.0
        self.stem = DartsStem(config)
        c_pp, _, c_p, _ = stem_output(config)
        c = config.cell_channels
        reduction_prev = config.stem == "imagenet"
        self.aux_position = config.reduction_layers[1]
        cells = []
        self.auxiliary = None
        for index, reduction in enumerate(cell_kinds(config)):
            if reduction:
                c *= 2
            gene = genotype.reduce if reduction else genotype.normal
            cells.append(EvalCell(gene, c_pp, c_p, c, reduction, reduction_prev))
            c_pp, c_p, reduction_prev = c_p, NUM_NODES * c, reduction
            if index == self.aux_position and config.auxiliary:
                self.auxiliary = AuxiliaryHead(c_p, config.num_classes)
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = self.stem(x)
        aux_logits = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if index == self.aux_position and self.auxiliary is not None and self.training:
                aux_logits = self.auxiliary(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        return logits if aux_logits is None else (logits, aux_logits)
