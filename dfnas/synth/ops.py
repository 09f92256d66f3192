"""The one place the synthesis engine takes its per-step ops from.

`dfnas.ops` holds the fused kernels; `dfnas.ops.reference` the same-signature eager definitions
(the spec). Switching between them is this one import.
"""
from __future__ import annotations

from dfnas.ops import bn_stat_loss, crop_windows, region_adam_, tv_loss

__all__ = ["bn_stat_loss", "crop_windows", "region_adam_", "tv_loss"]
