"""Loading a pruned network back: `load_teacher("dfnas.prune.pruned:build", weights=...)`.

dfnas-prune saves a pruned network as `pruned.safetensors` plus the sidecar `pruned.json`, whose
`factory_kwargs` name the unpruned network's factory and the output channels each pruned layer
keeps. `build` makes the unpruned network and cuts it to that shape; the loader then fills in the
saved weights. So a pruned model is used like any teacher: synthesize from it, distill from it,
or prune it again.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from dfnas.prune.channels import shrink
from dfnas.teachers.loader import import_from_working_directory


def build(base: str, base_kwargs: dict[str, Any], input_shape: Sequence[int], channels: dict[str, int]) -> nn.Module:
    """`base` ('pkg.module:factory') built with `base_kwargs`, each layer in `channels` cut to
    that many output channels (the weights are placeholders until a state dict is loaded)."""
    module_name, _, factory_name = base.partition(":")
    factory = getattr(import_from_working_directory(module_name), factory_name)
    model = factory(**base_kwargs)
    for parameter in model.parameters():  # torch-pruning traces a forward with autograd
        parameter.requires_grad_(True)
    return shrink(model, input_shape, channels)
