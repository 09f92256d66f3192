"""The ProxylessNAS supernet as it was before issue 12, for tests and benchmarks to compare
against: `torch_modules(model)` puts the torch modules back in place of the faster ones with the
same math (`InplaceReLU6` -> `nn.ReLU6(inplace=True)`, `Depthwise` -> `nn.Conv2d`), keeping the
parameter objects, so optimizers built on the model still hold them."""
from __future__ import annotations

from torch import nn

from dfnas.nas.spaces.proxyless_depthwise import Depthwise
from dfnas.nas.spaces.proxyless_relu6 import InplaceReLU6


def _torch_module(module: nn.Module) -> nn.Module | None:
    if isinstance(module, InplaceReLU6):
        return nn.ReLU6(inplace=True)
    if isinstance(module, Depthwise):
        conv = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                         module.padding, groups=module.groups, bias=False)
        conv.weight = module.weight
        return conv
    return None


def torch_modules(model: nn.Module) -> nn.Module:
    """`model`, changed in place as above."""
    for module in model.modules():
        for name, child in module.named_children():
            replacement = _torch_module(child)
            if replacement is not None:
                setattr(module, name, replacement)
    return model
