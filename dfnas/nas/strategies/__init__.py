"""Search strategies: DARTS, SPOS (+ evolution), ProxylessNAS, NAT. See docs/search.md.

Each strategy is a class with a config dataclass (reference defaults) and a `*_TINY` override
dict (the CLI's small default); `STRATEGIES` maps a name to both.
"""
from __future__ import annotations

from dfnas.nas.strategies.base import SearchConfig, SearchOutcome, Strategy, run_search
from dfnas.nas.strategies.darts import DARTS_TINY, DartsSearch, DartsSearchConfig
from dfnas.nas.strategies.nat import NatSearch
from dfnas.nas.strategies.nat_config import NAT_TINY, NatSearchConfig
from dfnas.nas.strategies.proxyless import PROXYLESS_TINY, ProxylessSearch, ProxylessSearchConfig
from dfnas.nas.strategies.spos import SPOS_TINY, SposSearch, SposSearchConfig

STRATEGIES = {
    "darts": (DartsSearch, DartsSearchConfig, DARTS_TINY),
    "spos": (SposSearch, SposSearchConfig, SPOS_TINY),
    "proxyless": (ProxylessSearch, ProxylessSearchConfig, PROXYLESS_TINY),
    "nat": (NatSearch, NatSearchConfig, NAT_TINY),
}

__all__ = ["STRATEGIES", "SearchConfig", "SearchOutcome", "Strategy", "run_search",
           "DartsSearch", "DartsSearchConfig", "SposSearch", "SposSearchConfig",
           "ProxylessSearch", "ProxylessSearchConfig", "NatSearch", "NatSearchConfig"]
