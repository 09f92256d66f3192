"""Search spaces: DARTS cells, SPOS (ShuffleNetV2 blocks), ProxylessNAS (MBConv blocks).

`get_space(name)` returns the `SearchSpace` registry entry the strategies and `dfnas.nas.arch`
work through; the modules themselves are importable from the per-space files.
"""
from __future__ import annotations

from typing import Any

from dfnas.nas.spaces import darts, proxyless, spos
from dfnas.nas.spaces.base import SearchSpace
from dfnas.nas.spaces.darts_eval import DartsNetwork
from dfnas.nas.spaces.darts_search import DartsSearchNetwork


def _as_int_list(choices: Any) -> list[int]:
    return [int(k) for k in choices]


_SPACES = {
    "darts": SearchSpace(
        name="darts",
        config_type=darts.DartsConfig,
        build_supernet=DartsSearchNetwork,
        build_network=DartsNetwork,
        check_choices=darts.check_genotype,
        selection=darts.selection,
        layout=darts.layout,
        choices_to_json=darts.genotype_to_json,
        choices_from_json=darts.as_genotype,
    ),
    "spos": SearchSpace(
        name="spos",
        config_type=spos.SposConfig,
        build_supernet=spos.SposSupernet,
        build_network=spos.SposNetwork,
        check_choices=spos.check_choice,
        selection=spos.selection,
        layout=spos.layout,
        choices_to_json=_as_int_list,
        choices_from_json=tuple,
    ),
    "proxyless": SearchSpace(
        name="proxyless",
        config_type=proxyless.ProxylessConfig,
        build_supernet=proxyless.ProxylessSupernet,
        build_network=proxyless.ProxylessNetwork,
        check_choices=proxyless.check_choices,
        selection=proxyless.selection,
        layout=proxyless.layout,
        choices_to_json=list,
        choices_from_json=list,
    ),
}

SPACE_NAMES: tuple[str, ...] = tuple(_SPACES)


def get_space(name: str) -> SearchSpace:
    """The registry entry of space `name` (one of `SPACE_NAMES`)."""
    try:
        return _SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; expected one of {list(SPACE_NAMES)}") from None
