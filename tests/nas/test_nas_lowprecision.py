"""Channels-last + bf16 autocast: every candidate op and every supernet, forward and backward."""
from __future__ import annotations

import pytest
import torch

from dfnas.nas.spaces import SPACE_NAMES, get_space
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig



# SPOS at 16x16 keeps every map >= 2x2: at 1x1, a full-suite run once gave non-finite bf16
# depthwise weight gradients in channels-last (not reproducible in isolation; see docs).
TINY = {"darts": DartsConfig.tiny(input_size=8), "spos": SposConfig.tiny(input_size=16),
        "proxyless": ProxylessConfig.tiny(input_size=8)}


def distinct_candidates(space: str):
    """One (name, part) per distinct candidate structure of the tiny space (input shape, module)."""
    seen = {}
    for slot in get_space(space).layout(TINY[space]).slots:
        for name, part in slot.candidates.items():
            seen.setdefault((part.input_shape, repr(part.build())), (name, part))
    return list(seen.values())


@pytest.mark.parametrize("space", SPACE_NAMES)
def test_every_candidate_op_runs_channels_last_under_bf16_autocast(space):
    torch.manual_seed(0)
    for name, part in distinct_candidates(space):
        module = part.build().train().to(memory_format=torch.channels_last)
        x = torch.randn(4, *part.input_shape).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(x)
        assert out.dtype in (torch.bfloat16, torch.float32), name
        if name == "zero":  # Proxyless `zero`: no parameters, output independent of the input
            assert not out.requires_grad and torch.count_nonzero(out) == 0
            continue
        out.float().square().mean().backward()
        assert torch.isfinite(x.grad).all(), name
        for p in module.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # Values are compared in eval mode: training-mode BN over a 4-sample, 2x2 batch rescales
        # bf16 rounding by 1/std and makes any fixed tolerance arbitrary. Wiring or layout bugs
        # change outputs by O(1); bf16 rounding by ~1%.
        reference = part.build()
        reference.load_state_dict(module.state_dict())  # including the BN statistics just updated
        module.eval(), reference.eval()
        with torch.no_grad():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = module(x)
            expected = reference(x.contiguous())
        assert out.shape == expected.shape, name
        scale = expected.abs().max().item()
        torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05 * scale, msg=name)


@pytest.mark.parametrize("space", SPACE_NAMES)
def test_supernet_forward_backward_channels_last_bf16(space):
    torch.manual_seed(0)
    config = TINY[space]
    supernet = get_space(space).build_supernet(config).to(memory_format=torch.channels_last)
    size = config.input_size
    x = torch.randn(4, 3, size, size).contiguous(memory_format=torch.channels_last)
    args = (x, [1] * config.num_layers) if space == "spos" else (x,)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = supernet(*args)
    logits.float().logsumexp(1).mean().backward()
    assert logits.shape == (4, config.num_classes)
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
