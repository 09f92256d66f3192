"""Linear warm-up, then cosine decay to zero (the reference's policy)."""
from __future__ import annotations

import math

from dfnas.synth.schedule import warmup_cosine_lr, warmup_iterations


def test_warmup_then_cosine():
    base, total, warmup = 0.25, 100, 10
    lrs = [warmup_cosine_lr(base, i, total, warmup) for i in range(total)]
    assert lrs[0] == base / 10 and lrs[9] == base
    assert lrs[10] == base
    assert math.isclose(lrs[55], 0.5 * (1 + math.cos(math.pi * 45 / 90)) * base)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < base * 1e-3


def test_no_warmup_and_fraction():
    assert warmup_cosine_lr(1.0, 0, 10, 0) == 1.0
    assert warmup_iterations(2000, 0.05) == 100


def test_warmup_boundary_and_rounding():
    """The first iteration after warm-up is the cosine's start (base), the warm-up's last reaches base."""
    assert warmup_cosine_lr(0.5, 3, 10, 4) == 0.5
    assert warmup_cosine_lr(0.5, 4, 10, 4) == 0.5
    assert math.isclose(warmup_cosine_lr(0.5, 7, 10, 4), 0.25 * (1 + math.cos(math.pi * 3 / 6)))
    assert warmup_iterations(10, 0.26) == 3 and warmup_iterations(10, 0.24) == 2
