"""Forward hooks measuring the statistics of every BatchNorm2d layer's *input*.

Each hook computes `bn_stat_loss(input, running_mean, running_var)` (biased variance over N, H, W;
plain L2 norms) when the teacher runs forward; `weighted_sum()` combines them with the first
layer (in `modules()` order, the stem BN) weighted by `first_bn_multiplier`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dfnas.ops import bn_stat_loss


class BNStatHooks:
    """Hooks on every BatchNorm2d of `model`; `losses` holds this forward's per-layer losses."""

    def __init__(self, model: nn.Module, first_bn_multiplier: float = 10.0) -> None:
        if isinstance(model, torch.jit.ScriptModule):
            raise ValueError(
                "TorchScript teachers cannot be synthesized from: the BN-statistics loss needs forward "
                "hooks, which TorchScript modules do not support; load the teacher as "
                "'package.module:factory' with its weights instead"
            )
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise ValueError("the teacher has no BatchNorm2d layer: the BN-statistics loss needs at least one")
        self.weights = [first_bn_multiplier] + [1.0] * (len(self.layers) - 1)
        self.losses: list[Tensor | None] = [None] * len(self.layers)
        self.enabled = True
        self._handles = [layer.register_forward_hook(self._hook_for(i)) for i, layer in enumerate(self.layers)]

    def _hook_for(self, index: int):
        def hook(module: nn.BatchNorm2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if not self.enabled:
                return
            # Under autocast the input is bf16/fp16: the fused op accumulates the statistics in fp32
            # itself, so no upcast copy of the activation is made.
            self.losses[index] = bn_stat_loss(inputs[0], module.running_mean, module.running_var)

        return hook

    def weighted_sum(self) -> Tensor:
        """sum_l w_l * loss_l of the last forward; every layer must have fired."""
        missing = [i for i, loss in enumerate(self.losses) if loss is None]
        if missing:
            raise RuntimeError(f"BatchNorm layers {missing} did not run in the teacher's forward")
        total = sum(w * loss for w, loss in zip(self.weights, self.losses))
        self.losses = [None] * len(self.layers)
        return total

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
