"""Unit tests of NAT's search-loop modules: the archive (`nat_archive`), the exact costs
(`nat_costs`), the genome encoding (`nat_spaces`) and the ProxylessNAS supernet (`nat_supernet`).
Fast: tiny spaces, a few steps, no search. Each test names the bug it guards against."""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dfnas.device import Precision
from dfnas.nas.arch import Architecture
from dfnas.nas.profile import CostTable, cost_table
from dfnas.nas.search_data import load_search_data
from dfnas.nas.spaces import get_space
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig
from dfnas.nas.strategies import nat_costs
from dfnas.nas.strategies.nat_archive import Archive, Member
from dfnas.nas.strategies.nat_costs import Costs, latency_table, slot_matrix
from dfnas.nas.strategies.nat_spaces import PathEncoding, build_supernet
from dfnas.nas.strategies.nat_supernet import ProxylessPathSupernet, ProxylessUniformSupernet
from dfnas.nas.strategies.spos import SUPERNET_PROBES, SposSearch, SposSearchConfig

from test_search_data import write_tiny_dataset

CPU = Precision(torch.device("cpu"))
SPOS = SposConfig.tiny(1, 8, 4)
PROXYLESS = ProxylessConfig.tiny(1, 8, 4)
SPACES = [("spos", SPOS), ("proxyless", PROXYLESS)]
# The units of the archive's costs, as nat_archive's docstring defines them.
UNITS = {"macs": "MMACs", "params": "M params", "latency": "ms"}


# ---------------------------------------------------------------------------------- the archive


def _member(path, agreement, macs, params, iteration=0, predicted=None, kl=0.25) -> Member:
    return Member(tuple(path), agreement, kl, {"macs": macs, "params": params}, iteration, predicted)


def test_member_round_trips_through_json_with_int_paths_and_its_own_costs():
    """Guards: a member that does not survive the checkpoint / archive.json (path not a tuple of
    ints: `(1.0,) == (1,)` would hide float genes; costs shared with the dict it was read from)."""
    for predicted in (None, 0.625):
        member = _member([3, 0, 2], 0.75, 1.5, 0.25, iteration=2, predicted=predicted, kl=0.125)
        data = json.loads(json.dumps(member.to_dict()))
        assert data == {"path": [3, 0, 2], "agreement": 0.75, "kl": 0.125, "costs": {"macs": 1.5, "params": 0.25},
                        "iteration": 2, "predicted": predicted}
        again = Member.from_dict(data)
        assert again == member
        assert isinstance(again.path, tuple) and all(type(k) is int for k in again.path)
        data["costs"]["macs"] = 99.0
        assert again.costs["macs"] == 1.5
    read = Member.from_dict({**member.to_dict(), "path": [np.int64(1), 2.0, "3"]})
    assert read.path == (1, 2, 3) and all(type(k) is int for k in read.path)


def test_archive_keeps_one_member_per_path_in_order():
    """Guards: duplicates in the archive (re-evaluated, double-counted on the front), membership
    by something other than the path, a lost member."""
    archive = Archive()
    assert len(archive) == 0 and (1, 2) not in archive
    first, second = _member([1, 2], 0.5, 1.0, 1.0), _member([2, 1], 0.5, 1.0, 1.0)
    archive.add(first)
    archive.add(second)
    assert len(archive) == 2 and archive.members == [first, second]
    assert (1, 2) in archive and (2, 1) in archive and (1, 1) not in archive
    with pytest.raises(ValueError, match=r"architecture \[1, 2\] is already in the archive"):
        archive.add(_member([1, 2], 0.9, 3.0, 3.0, iteration=4))
    assert archive.members == [first, second]
    # A new archive starts empty even after another one was filled (no shared default list).
    assert len(Archive()) == 0
    members = [first]
    Archive(members).add(second)
    assert members == [first]


def test_rescore_replaces_only_that_members_scores():
    """Guards: a rescore that moves the costs, iteration or prediction, swaps agreement and KL, or
    hits another member (the archive must be measured under the adapted weights)."""
    archive = Archive([_member([0], 0.5, 1.0, 2.0, iteration=0), _member([1], 0.6, 3.0, 4.0, iteration=1,
                                                                           predicted=0.7)])
    before = list(archive.members)
    archive.rescore(1, 0.875, 0.0625)
    assert archive.members[0] == before[0]
    assert archive.members[1] == dataclasses.replace(before[1], agreement=0.875, kl=0.0625)


def test_paths_agreements_and_objectives_are_read_from_the_members():
    """Guards: the predictors' features and targets, and NSGA-II's seeds, taken from the wrong
    field, dtype or order (error must be 1 - agreement, the costs in the order asked)."""
    archive = Archive([_member([0, 3], 0.75, 1.5, 0.5), _member([2, 1], 0.25, 2.5, 0.125)])
    paths = archive.paths()
    assert paths.dtype == np.int64 and paths.tolist() == [[0, 3], [2, 1]]
    agreements = archive.agreements()
    assert agreements.dtype == float and agreements.tolist() == [0.75, 0.25]
    assert archive.objectives(["params", "macs"]).tolist() == [[0.25, 0.5, 1.5], [0.75, 0.125, 2.5]]
    assert archive.objectives(["macs"]).dtype == float
    assert Archive().paths().dtype == np.int64  # genomes index cost tables, even from an empty archive


def _front_archive() -> Archive:
    return Archive([
        _member([0], 0.4, 2.0, 0.5),   # [0] and [3]: the same MACs, [3] the lower error
        _member([1], 0.9, 3.0, 1.0),
        _member([2], 0.5, 1.0, 9.0),
        _member([3], 0.5, 2.0, 1.0),
        _member([4], 0.3, 3.0, 2.0),   # dominated by [1] on every cost
        _member([6], 0.95, 4.0, 4.0),  # [6] and [5]: the same objectives, ordered by path
        _member([5], 0.95, 4.0, 4.0),
    ])


def test_front_is_the_non_dominated_members_by_first_cost_then_error_then_path():
    """Guards: a front over other objectives than asked, or numbered in another order (front/NN.json
    go by increasing first cost; equal costs by error, then path)."""
    archive = _front_archive()
    assert archive.front(["macs", "params"]) == [2, 3, 0, 1, 6, 5]
    assert archive.front(["params"]) == [0, 1, 6, 5]  # [1] dominates [3] on params alone
    assert archive.front(["macs"]) == [2, 1, 6, 5]  # [2] dominates [0] and [3] on MACs alone


def test_archive_list_round_trip():
    """Guards: members lost or changed by the checkpoint's archive list."""
    archive = _front_archive()
    again = Archive.from_list(json.loads(json.dumps(archive.to_list())))
    assert again.members == archive.members


def test_write_gives_archive_json_and_csv(tmp_path):
    """Guards: archive.json / archive.csv with wrong units, columns, values or front files."""
    archive = Archive([_member([0, 3], 0.75, 1.5, 0.5, iteration=0), _member([2, 1], 0.25, 2.5, 0.125, iteration=1,
                                                                              predicted=0.375, kl=2.0)])
    written = archive.write(tmp_path, ["macs", "params"], {1: "front/00.json"})
    assert written == [tmp_path / "archive.json", tmp_path / "archive.csv"]
    data = json.loads((tmp_path / "archive.json").read_text())
    assert data["cost_units"] == {"macs": UNITS["macs"], "params": UNITS["params"]}
    assert data["members"] == [{**m.to_dict(), "front_file": f} for m, f in zip(archive.members,
                                                                                 [None, "front/00.json"])]
    text = (tmp_path / "archive.csv").read_bytes().decode()  # read_text() would hide "\r\n"
    assert "\r" not in text and text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["path", "agreement", "kl", "macs", "params", "iteration", "predicted", "front_file"]
    assert rows[1] == ["0 3", "0.75", "0.25", "1.5", "0.5", "0", "", ""]
    assert rows[2] == ["2 1", "0.25", "2.0", "2.5", "0.125", "1", "0.375", "front/00.json"]
    assert len(rows) == 3
    # Only the costs asked for, in that order; latency's unit.
    archive = Archive([Member((1,), 0.5, 0.5, {"latency": 3.5, "macs": 1.0}, 0)])
    archive.write(tmp_path, ["latency"], {})
    assert json.loads((tmp_path / "archive.json").read_text())["cost_units"] == {"latency": UNITS["latency"]}
    assert (tmp_path / "archive.csv").read_text().splitlines()[1] == "1,0.5,0.5,3.5,0,,"


# ---------------------------------------------------------------------------------- the costs


def _counted(network: nn.Module) -> tuple[int, int]:
    """(MACs, params) of a built network, counted here: conv and linear multiply-accumulates of one
    8x8 sample seen by forward hooks, and the parameter tensors' sizes."""
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            macs += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        else:
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    network.eval()
    with torch.no_grad():
        network(torch.zeros(1, 1, 8, 8))
    for handle in handles:
        handle.remove()
    return macs, sum(p.numel() for p in network.parameters())


def _all_genomes(encoding: PathEncoding) -> np.ndarray:
    return np.array(list(itertools.product(*(range(n) for n in encoding.counts))), dtype=np.int64)


@pytest.mark.parametrize("space,config", SPACES)
def test_costs_of_a_genome_are_those_of_the_built_network(space, config):
    """Guards: a cost gathered from the wrong candidate or layer, a wrong scale (MMACs, M params),
    a fixed part left out, a batch costed differently from one genome."""
    encoding = PathEncoding.of(space, config)
    costs = Costs(space, config, ("macs", "params"), {}, None)
    generator = torch.Generator().manual_seed(5)
    paths = [tuple(0 for _ in encoding.counts), tuple(n - 1 for n in encoding.counts),
             *(encoding.sample(generator) for _ in range(4))]
    batch = {name: costs.of(np.array(paths), name) for name in ("macs", "params")}
    for row, path in enumerate(paths):
        macs, params = _counted(encoding.architecture(path).build())
        assert costs.of_path(path) == {"macs": pytest.approx(macs / 1e6, rel=1e-12),
                                       "params": pytest.approx(params / 1e6, rel=1e-12)}
        assert all(type(v) is float for v in costs.of_path(path).values())
        assert batch["macs"][row] == pytest.approx(macs / 1e6, rel=1e-12)
        assert batch["params"][row] == pytest.approx(params / 1e6, rel=1e-12)
    # A flat genome is one architecture; pymoo's float genomes index like ints.
    assert costs.of(np.array(paths[2]), "macs").tolist() == [batch["macs"][2]]
    assert costs.of(np.array(paths, dtype=float), "params").tolist() == batch["params"].tolist()
    assert costs.names == ["macs", "params"]
    assert costs.space == space and costs.objectives == ("macs", "params")  # (a resume rebuilds Costs from these)


@pytest.mark.parametrize("space,config", SPACES)
def test_extremes_are_the_cheapest_and_dearest_of_all_genomes(space, config):
    """Guards: hypervolume bounds and the initial archive's anchors that are not the space's
    cheapest / dearest architectures (NaN padding read as a cost, the wrong pick per layer)."""
    encoding = PathEncoding.of(space, config)
    costs = Costs(space, config, ("macs", "params"), {}, None)
    every = _all_genomes(encoding)
    for name in ("macs", "params"):
        values = costs.of(every, name)
        assert costs.extreme(name, min) == pytest.approx(values.min(), rel=1e-12)
        assert costs.extreme(name, max) == pytest.approx(values.max(), rel=1e-12)
        for pick, best in ((np.argmin, values.min()), (np.argmax, values.max())):
            path = costs.extreme_path(name, pick)
            assert all(type(k) is int for k in path) and all(0 <= k < n for k, n in zip(path, encoding.counts))
            assert costs.of_path(path)[name] == pytest.approx(best, rel=1e-12)
    assert costs.bounds.costs == ((pytest.approx(costs.of(every, "macs").min()),
                                   pytest.approx(costs.of(every, "macs").max())),
                                  (pytest.approx(costs.of(every, "params").min()),
                                   pytest.approx(costs.of(every, "params").max())))


def test_slot_matrix_pads_short_layers_with_nan():
    """Guards: a ragged layer padded with a cost (a genome past its choices would be priced) or
    the values put in the wrong place."""
    matrix = slot_matrix([{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 4.0}, {"x": 5.0, "y": 6.0}])
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, [[1, 2, 3], [4, np.nan, np.nan], [5, 6, np.nan]])


def test_limits_constraints_and_bounds():
    """Guards: a limit that is not the constraint (off by a sign, checked with `<`), a constraint
    on another cost, an impossible limit accepted or a possible one refused, bounds that ignore
    the limit."""
    encoding = PathEncoding.of("proxyless", PROXYLESS)
    free = Costs("proxyless", PROXYLESS, ("macs", "params"), {}, None)
    every = _all_genomes(encoding)
    macs, params = free.of(every, "macs"), free.of(every, "params")
    low, high = macs.min(), macs.max()
    macs_limit, params_limit = float(np.median(macs)), float(np.median(params))
    costs = Costs("proxyless", PROXYLESS, ("macs", "params"), {"params": params_limit, "macs": macs_limit}, None)
    violations = costs.violations(every)
    assert violations.shape == (len(every), 2)
    np.testing.assert_allclose(violations, np.stack([params - params_limit, macs - macs_limit], 1), rtol=0, atol=1e-15)
    feasible = [costs.feasible(tuple(g)) for g in every[::97]]
    assert feasible == [bool(m <= macs_limit and p <= params_limit) for m, p in zip(macs[::97], params[::97])]
    assert True in feasible and False in feasible
    assert costs.bounds.costs == ((pytest.approx(low), macs_limit), (pytest.approx(params.min()), params_limit))
    # A limit equal to an architecture's cost admits it; the cheapest architecture's cost is possible.
    at = tuple(every[np.argmin(np.abs(macs - macs_limit))])
    exact = Costs("proxyless", PROXYLESS, ("macs",), {"macs": free.of_path(at)["macs"]}, None)
    assert exact.feasible(at)
    cheapest = Costs("proxyless", PROXYLESS, ("macs",), {"macs": free.extreme("macs", min)}, None)
    assert cheapest.feasible(free.extreme_path("macs", np.argmin))
    assert not cheapest.feasible(free.extreme_path("macs", np.argmax))
    with pytest.raises(ValueError) as refused:
        Costs("proxyless", PROXYLESS, ("macs",), {"macs": low * (1 - 1e-9)}, None)
    assert str(refused.value) == (f"max_macs {low * (1 - 1e-9):.4g} MMACs is impossible: this space's architectures "
                                  f"have {low:.4g} to {high:.4g} MMACs")
    with pytest.raises(ValueError, match=r"max_params .* M params is impossible"):
        Costs("proxyless", PROXYLESS, ("macs",), {"params": params.min() / 2}, None)
    # No limits: everything is feasible.
    assert free.feasible(tuple(every[-1])) and free.limits == {}


def _fake_latency_table(space: str, config) -> CostTable:
    """A latency table of this space and size with known per-part costs (ms), not measured."""
    macs = cost_table(space, config, "macs")
    fixed = {name: 0.5 + i for i, name in enumerate(macs.fixed)}
    slots = [{name: 0.01 * (layer + 1) + 0.1 * k for k, name in enumerate(slot)} for layer, slot in enumerate(macs.slots)]
    return CostTable(space, macs.config, "latency_ms", fixed, slots, list(macs.slot_names))


def test_latency_is_costed_from_the_table_in_ms(tmp_path):
    """Guards: a latency objective not read from the given table, scaled like MACs, or dropped
    from the costs recorded per member; a table of another space / metric / size accepted."""
    table = _fake_latency_table("proxyless", PROXYLESS)
    costs = Costs("proxyless", PROXYLESS, ("latency",), {}, table)
    assert costs.names == ["macs", "params", "latency"] and costs.latency is table
    path = (5, 6, 0, 3, 1, 2)
    expected = sum(table.fixed.values()) + sum(list(slot.values())[k] for slot, k in zip(table.slots, path))
    assert costs.of_path(path)["latency"] == pytest.approx(expected, rel=1e-12)
    assert set(costs.of_path(path)) == {"macs", "params", "latency"}
    assert Costs("proxyless", PROXYLESS, ("macs",), {}, None).names == ["macs", "params"]

    table.save(tmp_path / "ok.json")
    loaded = latency_table(str(tmp_path / "ok.json"), "proxyless", PROXYLESS, torch.device("cpu"))
    assert loaded.to_dict() == table.to_dict()
    bad = {"spos": _fake_latency_table("spos", SPOS),
           "metric": dataclasses.replace(table, metric="macs"),
           "size": _fake_latency_table("proxyless", ProxylessConfig.tiny(1, 8, 5))}
    for name, wrong in bad.items():
        wrong.save(tmp_path / f"{name}.json")
        with pytest.raises(ValueError) as refused:
            latency_table(str(tmp_path / f"{name}.json"), "proxyless", PROXYLESS, torch.device("cpu"))
        assert str(refused.value) == (f"latency table {tmp_path / name}.json is for {wrong.space}/{wrong.metric} at "
                                      "another size; make one with dfnas.nas.profile.build_latency_table('proxyless', ...)")


def test_without_a_table_the_latency_is_measured_for_this_space(monkeypatch):
    """Guards: no table given -> a table of another space or size, or none, or one measured on
    the CPU when the search runs on another device."""
    measured = latency_table(None, "spos", SPOS, torch.device("cpu"))
    assert measured.space == "spos" and measured.metric == "latency_ms"
    assert measured.config == cost_table("spos", SPOS).config
    assert [len(s) for s in measured.slots] == [4] * len(_spos_layers())
    calls = []
    monkeypatch.setattr(nat_costs, "build_latency_table", lambda *args, **kwargs: calls.append((args, kwargs)))
    latency_table(None, "proxyless", PROXYLESS, torch.device("meta"))
    assert calls == [(("proxyless", PROXYLESS, torch.device("meta")), {})]


def _spos_layers() -> list:
    return get_space("spos").layout(SPOS).slots


# ---------------------------------------------------------------------------------- the genome


def test_encoding_counts_one_decision_per_layout_slot():
    """Guards: a genome of the wrong length or with the wrong choice count per decision."""
    spos = PathEncoding.of("spos", SPOS)
    assert spos.counts == (4,) * len(_spos_layers()) and spos.num_layers == len(_spos_layers())
    assert spos.space == "spos" and spos.config == SPOS
    proxyless = PathEncoding.of("proxyless", PROXYLESS)
    assert proxyless.counts == tuple(len(c) for c in PROXYLESS.block_candidates())
    assert proxyless.num_layers == 6


def test_sampling_is_uniform_over_each_decisions_range_and_seeded():
    """Guards: a sampler that never draws a decision's last (or draws past it) choice, ignores the
    generator (unreproducible searches), or leaves SPOS's stream (`torch.randint(4, (layers,))`)."""
    spos = PathEncoding.of("spos", SPOS)
    draws = [spos.sample(torch.Generator().manual_seed(seed)) for seed in range(3)]
    for seed, path in enumerate(draws):
        assert path == tuple(torch.randint(4, (spos.num_layers,), generator=torch.Generator().manual_seed(seed)).tolist())
        assert all(type(k) is int for k in path)
    encoding = PathEncoding.of("proxyless", PROXYLESS)
    generator = torch.Generator().manual_seed(0)
    samples = np.array([encoding.sample(generator) for _ in range(1400)])
    for layer, count in enumerate(encoding.counts):
        frequencies = np.bincount(samples[:, layer], minlength=count)
        assert len(frequencies) == count  # nothing past the last choice
        assert frequencies.min() > 0.6 * len(samples) / count  # every choice, about equally often
    torch.manual_seed(0)
    first = encoding.sample(torch.Generator().manual_seed(3))
    torch.manual_seed(1)
    assert encoding.sample(torch.Generator().manual_seed(3)) == first


def test_choices_and_architecture_of_a_genome():
    """Guards: the architecture file naming other candidates than the genome, or a front file
    without the latency of the table the search used."""
    assert PathEncoding.of("spos", SPOS).choices([3, 0, 2, 1, 1]) == (3, 0, 2, 1, 1)
    assert all(type(k) is int for k in PathEncoding.of("spos", SPOS).choices(np.array([3, 0, 2, 1, 1])))
    encoding = PathEncoding.of("proxyless", PROXYLESS)
    path = (5, 6, 0, 3, 1, 2)
    names = encoding.choices(path)
    assert names == [c[k] for c, k in zip(PROXYLESS.block_candidates(), path)]
    assert len(set(names)) > 3
    table = _fake_latency_table("proxyless", PROXYLESS)
    arch = encoding.architecture(path, latency_table=table)
    assert isinstance(arch, Architecture) and arch.space == "proxyless" and list(arch.choices) == names
    assert arch.derived["latency_ms"] == pytest.approx(table.cost(list(path)))
    assert "latency_ms" not in encoding.architecture(path).derived


# ---------------------------------------------------------------------------------- the supernets


def _data(tmp_path: Path):
    return load_search_data(str(write_tiny_dataset(tmp_path / "ds", count=60, num_classes=4)), torch.device("cpu"))


FAST = dict(epochs=2, steps_per_epoch=2, batch_size=8, calib_batches=1, calib_batch_size=8, val_batch_size=16,
            seed=5)


def test_build_supernet_per_space(tmp_path):
    """Guards: NAT on one space silently building the other's supernet, or an unknown space
    reaching the search."""
    data = _data(tmp_path)
    config = SposSearchConfig(**FAST)
    assert type(build_supernet("spos", config, data, CPU)) is SposSearch
    assert type(build_supernet("proxyless", config, data, CPU)) is ProxylessUniformSupernet
    with pytest.raises(ValueError) as refused:
        build_supernet("darts", config, data, CPU)
    assert str(refused.value) == "NAT searches the spaces spos, proxyless; got 'darts'"


def test_path_supernet_refuses_every_path_outside_the_choices():
    """Guards: a path check off by one at either end, or one that accepts a short path (zip would
    leave the last blocks at whatever ran before)."""
    supernet = ProxylessPathSupernet(PROXYLESS).eval()
    x = torch.zeros(1, 1, 8, 8)
    counts = [len(c) for c in PROXYLESS.block_candidates()]
    for bad in ([0] * 5, [0] * 7, [-1] + [0] * 5, [counts[0]] + [0] * 5, [0] * 5 + [counts[5]]):
        with pytest.raises(ValueError) as refused:
            supernet(x, bad)
        assert str(refused.value) == (f"proxyless: path must be 6 ints, block i in 0..(its candidates - 1) "
                                      f"({counts}), got {bad}")
    top = [n - 1 for n in counts]
    with torch.no_grad():
        torch.testing.assert_close(supernet(x, np.array(top)), supernet(x, top))
        torch.testing.assert_close(supernet(x, torch.tensor(top)), supernet(x, top))


def _proxyless(tmp_path: Path, **changes) -> ProxylessUniformSupernet:
    return ProxylessUniformSupernet(SposSearchConfig(**{**FAST, **changes}), _data(tmp_path), CPU)


def test_uniform_supernet_is_set_up_from_its_config(tmp_path):
    """Guards: a supernet of another size, unseeded weights or probe paths, the wrong metric or
    class count, a batch-fitting notice that is lost (or made up), probes off path 0."""
    supernet = _proxyless(tmp_path)
    assert supernet.notices == [] and supernet.config == SposSearchConfig(**FAST)
    assert supernet.metric == "agreement" and supernet.num_classes == 4
    assert supernet.space_config == PROXYLESS and supernet.encoding == PathEncoding.of("proxyless", PROXYLESS)
    assert supernet.last_metrics == {} and supernet.final_metrics() == {}
    torch.manual_seed(FAST["seed"])
    expected = ProxylessPathSupernet(PROXYLESS).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in supernet.model.state_dict().items())
    probes = torch.Generator().manual_seed(FAST["seed"] + 6)
    assert supernet.probe_paths == [supernet.encoding.sample(probes) for _ in range(SUPERNET_PROBES)]
    assert len(set(supernet.probe_paths)) == SUPERNET_PROBES
    model, x = supernet.model.train(), torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(supernet.probe_forward(model, x), model(x, [0] * 6), rtol=0, atol=0)
        path = supernet.probe_paths[0]
        torch.testing.assert_close(supernet.path_forward(path)(x), model(x, path), rtol=0, atol=0)
    assert supernet.unit_steps(0) == 2 and supernet.unit_steps(1) == 2
    one_pass = _proxyless(tmp_path, steps_per_epoch=0)
    assert one_pass.unit_steps(0) == one_pass.stream.batches_per_epoch > 2
    fitted = _proxyless(tmp_path, steps_per_epoch=0, batch_size=1024)
    assert len(fitted.notices) == 1 and "batch" in fitted.notices[0] and fitted.config.batch_size < 1024


def test_warm_start_epoch_trains_uniform_paths_from_the_sampler(tmp_path):
    """Guards: warm-start paths not drawn uniformly from the seeded sampler (or not the genome's
    candidates), a wrong step count, and final metrics that are not the probe paths' scores."""
    supernet = _proxyless(tmp_path)
    expected_sampler = torch.Generator()
    expected_sampler.set_state(supernet.sampler.get_state())
    expected = [supernet.encoding.sample(expected_sampler) for _ in range(2)]
    seen = []
    hook = supernet.model.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(int(k) for k in args[1])) if module.training else None)
    ticks = []
    record = supernet.run_unit(0, ticks.append)
    hook.remove()
    assert seen == expected and ticks == [1, 1]
    assert torch.equal(supernet.sampler.get_state(), expected_sampler.get_state())
    assert record["phase"] == "supernet" and record["val_agreement"] == supernet.last_metrics["agreement"]
    probes = supernet.evaluator.score_each([supernet.path_forward(p) for p in supernet.probe_paths])
    assert supernet.last_metrics == pytest.approx({k: sum(p[k] for p in probes) / len(probes)
                                                   for k in ("agreement", "kl")})
    final = supernet.final_metrics()
    assert final == {"metric": "agreement", "agreement": supernet.last_metrics["agreement"],
                     "kl": supernet.last_metrics["kl"], "num_classes": 4,
                     "measured_on": f"{SUPERNET_PROBES} random paths of the supernet"}


def test_uniform_supernet_state_round_trip_continues_identically(tmp_path):
    """Guards: a checkpoint that misses part of the warm start (weights, momentum, lr schedule,
    batch stream, path sampler, the probes' last metrics): a resumed run would differ."""
    original = _proxyless(tmp_path)
    original.run_unit(0, lambda _: None)
    resumed = _proxyless(tmp_path)
    resumed.load_state_dict(copy.deepcopy(original.state_dict()))  # a copy, as the checkpoint file is
    assert resumed.final_metrics() == original.final_metrics() != {}
    records = [supernet.run_unit(1, lambda _: None) for supernet in (original, resumed)]
    assert records[0] == records[1]
    assert records[0]["lr"] == pytest.approx(_lr_after_two_steps())
    for key, value in original.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.equal(original.sampler.get_state(), resumed.sampler.get_state())


def test_the_batch_notice_is_logged_with_the_first_epoch_only(tmp_path):
    """Guards: the notice that the batch was fitted to a small split lost from the log (or
    repeated every epoch): `run_unit` must pass its unit on."""
    fitted = _proxyless(tmp_path, steps_per_epoch=0, batch_size=1024)
    first, second = (fitted.run_unit(unit, lambda _: None) for unit in (0, 1))
    assert first["notice"] == fitted.notices[0] and "notice" not in second


def test_the_trainer_state_is_checkpointed(tmp_path):
    """Guards: the trainer's state (the fp16 loss scale, CUDA only: given here a CPU scaler) left out
    of the supernet's checkpoint, so a resumed fp16 run would restart at the initial scale."""
    original, resumed = _proxyless(tmp_path), _proxyless(tmp_path)
    original.trainer.scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    resumed.trainer.scaler = torch.amp.GradScaler("cpu")
    resumed.load_state_dict(copy.deepcopy(original.state_dict()))
    assert resumed.trainer.scaler.get_scale() == 8.0


def _lr_after_two_steps() -> float:
    """The lr of the second warm-start epoch: linear decay to 0 over 2 epochs of 2 steps."""
    return SposSearchConfig().lr * (1 - 2 / 4)
