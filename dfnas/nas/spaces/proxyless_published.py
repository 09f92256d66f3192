"""The ImageNet architectures ProxylessNAS released (GPU, CPU, mobile, mobile 1.4x), in this space.

Widths, kernels, expansions and zero blocks are those of the released `net.config` files (also
tabulated in osmr/imgclsmob `pytorchcv/models/proxylessnas.py`). The released nets use hand-set
widths per stage, so each comes with its own `ProxylessConfig`.
"""
from __future__ import annotations

from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.proxyless_blocks import ZERO, op_name

# name: (stem, first block, stage widths, head, per-stage "kernel/expand" codes; 0 = zero block)
_PUBLISHED = {
    "gpu": (40, 24, (32, 56, 112, 128, 256, 432), 1728,
            ("53 0 0 0", "73 0 0 33", "76 0 0 53", "56 0 33 53", "76 76 76 56", "76")),
    "cpu": (40, 24, (32, 48, 88, 104, 216, 360), 1432,
            ("36 33 33 33", "36 33 33 53", "36 0 0 33", "56 33 33 33", "56 53 53 33", "56")),
    "mobile": (32, 16, (32, 40, 80, 96, 192, 320), 1280,
               ("53 33 0 0", "73 33 53 53", "76 53 53 53", "56 53 53 53", "76 76 73 73", "76")),
    "mobile_14": (48, 24, (40, 56, 112, 136, 256, 448), 1792,
                  ("53 33 0 0", "73 33 53 53", "76 53 53 53", "56 53 53 53", "76 76 73 73", "76")),
}

PUBLISHED_NAMES: tuple[str, ...] = tuple(_PUBLISHED)


def published(name: str) -> tuple[ProxylessConfig, list[str]]:
    """(config, choices) of ProxylessNAS-`name` for `name` in `PUBLISHED_NAMES`."""
    if name not in _PUBLISHED:
        raise ValueError(f"proxyless: no published architecture {name!r}; expected one of {PUBLISHED_NAMES}")
    stem, first, widths, head, stages = _PUBLISHED[name]
    choices = [ZERO if code == "0" else op_name(int(code[0]), int(code[1]))
               for stage in stages for code in stage.split()]
    config = ProxylessConfig(stem_width=stem, first_block_width=first, stage_widths=widths,
                             head_width=head)
    return config, choices
