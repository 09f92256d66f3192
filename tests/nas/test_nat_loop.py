"""Unit tests of the NAT loop (`nat.py`) without a whole search: the units' step counts, the initial
archive, the random fill, the adaptation's paths, the per-unit record, the chosen member, the
checkpoint and the result files. Tiny SPOS space, a few scoring passes. Each test names the bug it
guards against."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfnas.device import Precision
from dfnas.nas.arch import Architecture
from dfnas.nas.search_data import load_search_data
from dfnas.nas.spaces.spos import SposConfig
from dfnas.nas.strategies.nat import SAMPLING_TRIES, NatSearch
from dfnas.nas.strategies.nat_archive import Archive, Member
from dfnas.nas.strategies.nat_config import NatSearchConfig
from dfnas.nas.strategies.nat_costs import Costs
from dfnas.nas.strategies.nat_front import hypervolume
from dfnas.nas.strategies.nat_spaces import PathEncoding

from test_nat_units import _fake_latency_table
from test_search_data import write_tiny_dataset

CPU = Precision(torch.device("cpu"))
SPOS = SposConfig.tiny(1, 8, 4)
ENCODING = PathEncoding.of("spos", SPOS)
FREE = Costs("spos", SPOS, ("macs",), {}, None)
EVERY = np.array(list(itertools.product(range(4), repeat=ENCODING.num_layers)), dtype=np.int64)
MACS = np.sort(np.unique(FREE.of(EVERY, "macs")))
FAST = dict(epochs=1, steps_per_epoch=2, batch_size=8, calib_batches=1, calib_batch_size=8, val_batch_size=16,
            initial_samples=5, iterations=1, picks=2, nsga_population=4, cv_folds=2, adapt_epochs=1, seed=3)


def _search(tmp_path: Path, **changes) -> NatSearch:
    data = load_search_data(str(write_tiny_dataset(tmp_path / "ds", count=60, num_classes=4)), torch.device("cpu"))
    return NatSearch(NatSearchConfig(**{**FAST, **changes}), data, CPU)


def _macs(level: float) -> float:
    """MMACs `level` fifths of the way from the space's cheapest to its dearest architecture."""
    return float(MACS[0] + level / 5 * (MACS[-1] - MACS[0]))


def _member(path, agreement, level, kl=0.5, iteration=0) -> Member:
    return Member(tuple(path), agreement, kl, {"macs": _macs(level), "params": 0.01 * level}, iteration)


def test_unit_steps_of_each_kind_of_unit(tmp_path):
    """Guards: a progress bar (and the runner's step accounting) off for the warm start, the initial
    archive or an iteration (picks + adaptation steps + the rescoring of the archive and the picks)."""
    search = _search(tmp_path)
    assert search.num_units == 1 + 1 + 1
    assert search.unit_steps(0) == search.supernet.unit_steps(0) == 2
    assert search.unit_steps(1) == 5
    search.archive = Archive([_member([k, 0, 0, 0, 0], 0.5, 1.0 + k) for k in range(4)])
    assert search._adapt_steps() == 2 and search._rescores()
    assert search.unit_steps(2) == 2 + 2 + (4 + 2)
    quiet = _search(tmp_path, rescore_archive=False, adapt_epochs=3)
    quiet.archive = search.archive
    assert not quiet._rescores() and quiet._adapt_steps() == 6 and quiet.unit_steps(2) == 2 + 6
    fixed = _search(tmp_path, adapt_epochs=0)
    fixed.archive = search.archive
    assert not fixed._rescores() and fixed.unit_steps(2) == 2
    assert fixed._adapt(lambda _: None) is None
    one = _search(tmp_path, steps_per_epoch=1)
    assert one._adapt_steps() == 1 and one._rescores()  # a single adaptation step changes the weights too
    passes = _search(tmp_path, steps_per_epoch=0, adapt_epochs=2)
    assert passes._adapt_steps() == 2 * passes.supernet.stream.batches_per_epoch > 2
    assert search.notices == search.supernet.notices == []
    fitted = _search(tmp_path, steps_per_epoch=0, batch_size=1024)  # the runner logs the batch-fitting notice
    assert len(fitted.notices) == 1 and fitted.notices == fitted.supernet.notices


def test_a_latency_objective_or_limit_loads_the_table_for_this_device(tmp_path, monkeypatch):
    """Guards: a latency limit without a latency objective left unchecked (no table), or the table
    measured on another device than the search's."""
    from dfnas.nas.strategies import nat

    calls = []

    def fake(*args):
        calls.append(args)
        return _fake_latency_table("spos", SPOS)

    monkeypatch.setattr(nat, "latency_table", fake)
    search = _search(tmp_path, max_latency=5.0)
    assert calls == [(None, "spos", SPOS, torch.device("cpu"))] and "latency" in search.costs.names
    _search(tmp_path, objectives="latency")
    assert len(calls) == 2
    _search(tmp_path)
    assert len(calls) == 2


def test_initial_archive_starts_with_the_extremes_then_new_random_feasible_paths(tmp_path):
    """Guards: an initial archive without the cheapest / dearest anchors (or with an infeasible
    one), duplicates, infeasible or unseeded random paths, scores or costs of other paths, a
    wrong iteration, progress or record."""
    for limit in (None, float(MACS[len(MACS) // 2])):
        search = _search(tmp_path, max_macs=limit)
        ticks = []
        record = search._initial_archive(ticks.append)
        paths = [m.path for m in search.archive.members]
        assert len(paths) == 5 == len(set(paths)) and ticks == [1] * 5
        assert paths[0] == FREE.extreme_path("macs", np.argmin)
        assert (paths[1] == FREE.extreme_path("macs", np.argmax)) == (limit is None)
        assert all(search.costs.feasible(p) for p in paths)
        for member, scores in zip(search.archive.members, search._evaluate(paths)):
            assert (member.agreement, member.kl) == (scores["agreement"], scores["kl"])
            assert member.costs == FREE.of_path(member.path) and member.iteration == 0 and member.predicted is None
        assert record["phase"] == "initial archive" and record["evaluated"] == 5
        assert record["hv_reference"] == search.costs.bounds.to_dict()
        assert record["archive_size"] == 5 and [(h["iteration"], h["predictor_tau"]) for h in search.history] == [
            (0, None)]
    # The random paths come from the search's seeded generator, not the global one.
    torch.manual_seed(123)
    again = _search(tmp_path, max_macs=float(MACS[len(MACS) // 2]))
    again._initial_archive(lambda _: None)
    assert [m.path for m in again.archive.members] == paths


def test_too_few_feasible_architectures_are_refused(tmp_path):
    """Guards: a search started with fewer than the 3 architectures the predictors need (or one
    refused with exactly 3)."""
    three = _search(tmp_path, max_macs=float(MACS[2]), initial_samples=40)  # the three cheapest
    three._initial_archive(lambda _: None)
    assert len(three.archive) == 3
    search = _search(tmp_path, max_macs=float(MACS[0]))  # only the cheapest architecture is feasible
    with pytest.raises(ValueError) as refused:
        search._initial_archive(lambda _: None)
    assert str(refused.value) == ("only 1 architectures satisfy the constraints {'macs': %r}; the predictors need "
                                  "at least 3 (loosen them)" % float(MACS[0]))


def test_random_paths_are_new_feasible_and_give_up_after_the_tries(tmp_path):
    """Guards: random fills that repeat a path (taken, already found or in the archive), break the
    constraint, stop early, or loop more (or fewer) than SAMPLING_TRIES draws per wanted path."""
    search = _search(tmp_path, max_macs=float(MACS[len(MACS) // 2]))
    search.archive = Archive([_member(p, 0.5, 1.0) for p in EVERY[:300:7].tolist()])
    taken = [tuple(p) for p in EVERY[1:300:7].tolist()]
    replay = torch.Generator()
    replay.set_state(search.generator.get_state())
    found = search._random_paths(6, taken)
    expected = []
    while len(expected) < 6:
        path = ENCODING.sample(replay)
        if (path not in taken and path not in expected and path not in search.archive
                and FREE.of_path(path)["macs"] <= MACS[len(MACS) // 2]):
            expected.append(path)
    assert found == expected
    assert torch.equal(search.generator.get_state(), replay.get_state())
    assert search._random_paths(0, []) == [] and search._random_paths(-1, []) == []
    # Only the cheapest architecture is feasible: two wanted, none new, exactly 2 x SAMPLING_TRIES draws.
    tight = _search(tmp_path, max_macs=float(MACS[0]))
    replay.set_state(tight.generator.get_state())
    assert tight._random_paths(2, [FREE.extreme_path("macs", np.argmin)]) == []
    for _ in range(2 * SAMPLING_TRIES):
        ENCODING.sample(replay)
    assert torch.equal(tight.generator.get_state(), replay.get_state())


def _archive() -> Archive:
    return Archive([
        _member([0, 0, 0, 0, 0], 0.5, 1.0, kl=0.9),
        _member([1, 0, 0, 0, 0], 0.7, 2.0, kl=0.8),
        _member([2, 0, 0, 0, 0], 0.7, 3.0, kl=0.7),  # dominated by [1]: same agreement, dearer
        _member([3, 0, 0, 0, 0], 0.9, 4.0, kl=0.6),
        _member([0, 1, 0, 0, 0], 0.9, 4.0, kl=0.5),  # the same objectives as [3]: both on the front
        _member([0, 2, 0, 0, 0], 0.2, 5.0, kl=0.4),  # dominated
    ])


def test_close_unit_records_the_front_and_its_best_member(tmp_path):
    """Guards: the history and log record of a unit with another hypervolume, front or best member
    (ties must go to the first evaluated), a wrong metric name or cost key."""
    search = _search(tmp_path)
    search.archive = _archive()
    record = search._close_unit(3, 0.25)
    front = [0, 1, 4, 3]  # [4] and [3]: the same objectives, by path
    assert search.front() == front
    volume = hypervolume(search.archive.objectives(("macs",))[front], search.costs.bounds)
    assert search.history == [{"iteration": 3, "hypervolume": volume, "predictor_tau": 0.25}]
    # [3] and [4] tie: the first evaluated.
    assert record == {"hypervolume": volume, "archive_size": 6, "front_size": 4, "val_agreement": 0.9, "val_kl": 0.6,
                      "best_macs": _macs(4.0), "best_path": [3, 0, 0, 0, 0]}
    assert 0.1 < volume < 1.01


def test_the_chosen_architecture_is_the_best_front_member_then_the_cheaper(tmp_path):
    """Guards: architecture.json holding a dominated member, the worst one, or the dearer of two
    equally good ones."""
    search = _search(tmp_path)
    search.archive = _archive()
    search.archive.members[4] = Member((0, 1, 0, 0, 0), 0.9, 0.5, {"macs": _macs(3.5), "params": 0.035}, 0)
    assert search.chosen() == 4
    assert search.architecture() == ENCODING.architecture((0, 1, 0, 0, 0))
    search.archive.members[4] = Member((0, 1, 0, 0, 0), 0.9, 0.5, {"macs": _macs(4.5), "params": 0.045}, 0)
    assert search.chosen() == 3
    search.archive.add(_member([0, 3, 0, 0, 0], 0.1, 0.5))  # on the front (the cheapest), last, the worst
    assert search.chosen() == 3
    # Two costs: equally good front members, the cheaper by the first cost wins.
    both = _search(tmp_path, objectives="macs,params")
    both.archive = Archive([Member((1, 0, 0, 0, 0), 0.9, 0.5, {"macs": _macs(4.0), "params": 0.01}, 0),
                            Member((2, 0, 0, 0, 0), 0.9, 0.5, {"macs": _macs(3.0), "params": 0.05}, 0)])
    assert both.front() == [1, 0] and both.chosen() == 1


def test_adaptation_draws_only_the_fronts_choices_at_the_adapt_lr(tmp_path, monkeypatch):
    """Guards: adaptation paths drawn uniformly (or from the whole archive) instead of from the
    front's per-layer choices, the warm start's lr kept, a wrong step count or mean loss."""
    search = _search(tmp_path, adapt_epochs=2, adapt_lr=0.0125)
    search.archive = _archive()
    front = search.archive.paths()[search.front()]
    seen = []
    hook = search.model.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[1])) if module.training else None)
    ticks = []
    loss = search._adapt(ticks.append)
    hook.remove()
    assert len(seen) == 4 and ticks == [1] * 4
    for path in seen:
        assert all(k in front[:, layer] for layer, k in enumerate(path)), path
    assert all(group["lr"] == 0.0125 for group in search.supernet.optimizer.param_groups)
    assert isinstance(loss, float) and loss > 0
    # The paths come from the search's generator (not the global one); the loss is the steps' mean;
    # the gradient is clipped as configured.
    again = _search(tmp_path, adapt_epochs=2, adapt_lr=0.0125, grad_clip=0.5)
    again.archive = _archive()
    torch.manual_seed(77)
    losses, clipped = [], []
    step = again.supernet.trainer.step
    monkeypatch.setattr(again.supernet.trainer, "step", lambda *a: losses.append(step(*a)) or losses[-1])
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: clipped.append(norm) or clip(params, norm))
    seen.clear()
    hook = again.model.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[1])) if module.training else None)
    mean = again._adapt(lambda _: None)
    hook.remove()
    assert len(seen) == 4 and mean == pytest.approx(sum(losses) / 4) and clipped == [0.5] * 4
    drawn = list(seen)
    third = _search(tmp_path, adapt_epochs=2, adapt_lr=0.0125, grad_clip=0.5)
    third.archive = _archive()
    torch.manual_seed(78)
    seen.clear()
    hook = third.model.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[1])) if module.training else None)
    third._adapt(lambda _: None)
    hook.remove()
    assert seen == drawn
    # A one-member front: every adaptation path is that member.
    single = _search(tmp_path, adapt_epochs=1)
    single.archive = Archive([_member([2, 1, 3, 0, 1], 0.9, 1.0), _member([0, 0, 0, 0, 0], 0.5, 2.0)])
    seen.clear()
    hook = single.model.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[1])) if module.training else None)
    single._adapt(lambda _: None)
    hook.remove()
    assert seen == [(2, 1, 3, 0, 1)] * 2


def test_state_round_trip_keeps_the_archive_history_generator_and_latency_table(tmp_path):
    """Guards: a resume that loses the archive, the history, the sampling generator, or measures
    a new latency table instead of the one the first run used."""
    table = _fake_latency_table("spos", SPOS)
    table.save(tmp_path / "table.json")
    search = _search(tmp_path, objectives="macs,latency", latency_table=str(tmp_path / "table.json"))
    search.archive = Archive([dataclasses.replace(m, costs=search.costs.of_path(m.path)) for m in _archive().members])
    search._close_unit(0, None)
    search.generator.manual_seed(99)
    state = copy.deepcopy(search.state_dict())
    other = dict(table.to_dict())
    other["fixed"] = {name: value + 1.0 for name, value in table.fixed.items()}
    (tmp_path / "other.json").write_text(json.dumps(other))
    resumed = _search(tmp_path, objectives="macs,latency", latency_table=str(tmp_path / "other.json"))
    resumed.load_state_dict(state)
    assert resumed.archive.members == search.archive.members and resumed.history == search.history
    assert torch.equal(resumed.generator.get_state(), search.generator.get_state())
    assert resumed.costs.latency.to_dict() == table.to_dict()
    assert resumed.costs.objectives == ("macs", "latency") and resumed.costs.space == "spos"
    path = (1, 2, 3, 0, 1)
    assert resumed.costs.of_path(path) == search.costs.of_path(path)
    chosen = search.archive.members[search.chosen()].path
    assert search.architecture().derived["latency_ms"] == pytest.approx(table.cost(list(chosen)))
    plain = _search(tmp_path)
    assert plain.state_dict()["latency_table"] is None
    plain.load_state_dict(copy.deepcopy(plain.state_dict()))
    assert plain.costs.latency is None


def test_final_metrics_and_result_files(tmp_path):
    """Guards: final metrics of another member than the chosen one, and front files that are
    not the front by increasing first cost (stale ones from a longer front left behind)."""
    search = _search(tmp_path)
    assert search.final_metrics() == search.supernet.final_metrics()
    search.archive = _archive()
    search._close_unit(1, None)
    # The chosen member: [3] and [4] tie on agreement and MACs, [4] comes first on the front.
    assert search.chosen() == 4
    assert search.final_metrics() == {"metric": "agreement", "agreement": 0.9, "kl": 0.5, "num_classes": 4,
                                      "measured_on": "the best architecture of the front", "front_size": 4,
                                      "hypervolume": search.history[-1]["hypervolume"]}
    out = tmp_path / "out"
    (out / "front").mkdir(parents=True)
    (out / "front" / "07.json").write_text("{}")
    written = search.write_results(out)
    assert sorted(p.name for p in (out / "front").iterdir()) == ["00.json", "01.json", "02.json", "03.json"]
    for rank, index in enumerate([0, 1, 4, 3]):
        arch = Architecture.load(out / "front" / f"{rank:02d}.json")
        assert tuple(arch.choices) == search.archive.members[index].path
    members = json.loads((out / "archive.json").read_text())["members"]
    assert [m["front_file"] for m in members] == ["front/00.json", "front/01.json", None, "front/03.json",
                                                  "front/02.json", None]
    assert json.loads((out / "hypervolume.json").read_text()) == {**search.costs.bounds.to_dict(),
                                                                  "history": search.history}
    assert written == [out / f"front/{k:02d}.json" for k in range(4)] + [out / "archive.json", out / "archive.csv",
                                                                         out / "hypervolume.json"]


class _Linear:
    """A fixed predictor: agreement = a weighted sum of the one-hot genome."""

    def __init__(self, counts):
        self.weights = np.random.default_rng(0).uniform(0, 0.2, sum(counts))

    def predict(self, features):
        return np.asarray(features, float) @ self.weights


def _brute_front(objectives: np.ndarray) -> list[int]:
    return [i for i, a in enumerate(objectives)
            if not any((b <= a).all() and (b < a).any() for b in objectives)]


def test_propose_picks_new_feasible_members_of_the_predicted_front(tmp_path, monkeypatch):
    """Guards: picks that are already in the archive, infeasible, repeated, off NSGA-II's predicted
    front, or guessed with another value than the predictor's; NSGA-II seeded or configured with
    other settings than the search's."""
    from dfnas.nas.strategies import nat

    limit = _macs(4.0)
    search = _search(tmp_path, max_macs=limit, picks=3, nsga_population=12, nsga_generations=3)
    search.archive = Archive([_member(p, 0.5 + 0.01 * i, 1.0 + 0.1 * i) for i, p in enumerate(EVERY[:400:50].tolist())])
    model = _Linear(ENCODING.counts)
    calls = []

    def recording(*args):
        calls.append(args)
        calls.append(nat_nsga2(*args))
        return calls[-1]

    nat_nsga2 = nat.nsga2
    monkeypatch.setattr(nat, "nsga2", recording)
    paths, guesses = search._propose(model, 17)
    (num_layers, counts, objectives, num_objectives, constraints, num_constraints, seeds, population_size,
     generations, seed), population = calls
    assert (num_layers, counts, num_objectives, num_constraints, population_size, generations, seed) == (
        5, ENCODING.counts, 2, 1, 12, 3, 17)
    np.testing.assert_array_equal(seeds, search.archive.paths()[search.front()])
    genomes = EVERY[:7]
    np.testing.assert_allclose(objectives(genomes), np.stack([1 - model.predict(nat.one_hot(genomes, ENCODING.counts)),
                                                              FREE.of(genomes, "macs")], 1))
    np.testing.assert_allclose(constraints(genomes), (FREE.of(genomes, "macs") - limit)[:, None])
    assert len(paths) == 3 == len(set(paths)) and all(type(k) is int for p in paths for k in p)
    assert all(p not in search.archive and FREE.of_path(p)["macs"] <= limit for p in paths)
    assert guesses == pytest.approx([float(model.predict(nat.one_hot([p], ENCODING.counts))[0]) for p in paths])
    new = {}
    for i, genome in enumerate(population.genomes):
        key = tuple(genome.tolist())
        if population.feasible[i] and key not in search.archive and key not in new:
            new[key] = i
    front = [list(new)[k] for k in _brute_front(population.objectives[list(new.values())])]
    assert set(paths) <= set(front) if len(front) >= 3 else set(front) <= set(paths)


def test_propose_fills_up_with_random_paths_when_nsga_finds_nothing_new(tmp_path, monkeypatch):
    """Guards: fewer picks than asked when NSGA-II's population holds only archive members, or
    random picks without the predictor's guess."""
    from dfnas.nas.strategies import nat
    from dfnas.nas.strategies.nat_nsga import Population

    search = _search(tmp_path, picks=2)
    search.archive = Archive([_member(p, 0.5, 1.0) for p in EVERY[:4].tolist()])
    stale = Population(EVERY[:4].copy(), np.zeros((4, 2)), np.ones(4, dtype=bool))
    monkeypatch.setattr(nat, "nsga2", lambda *args: stale)
    model = _Linear(ENCODING.counts)
    replay = torch.Generator()
    replay.set_state(search.generator.get_state())
    paths, guesses = search._propose(model, 1)
    assert paths == [ENCODING.sample(replay), ENCODING.sample(replay)]  # (EVERY[:4] is unlikely to be drawn)
    assert guesses == pytest.approx([float(model.predict(nat.one_hot([p], ENCODING.counts))[0]) for p in paths])


def test_an_iteration_adds_the_picks_adapts_and_rescores_the_archive(tmp_path):
    """Guards: an iteration that logs another predictor than the best cross-validated one, records
    the picks with another iteration or guess, skips the rescoring after adaptation, or
    miscounts its progress; `run_unit` dispatching a unit to the wrong phase."""
    search = _search(tmp_path, predictors="rbf,trees", nsga_generations=2, initial_samples=6)
    assert search.run_unit(0, lambda _: None)["phase"] == "supernet"
    assert search.run_unit(1, lambda _: None)["phase"] == "initial archive"
    steps = search.unit_steps(2)
    ticks = []
    record = search.run_unit(2, ticks.append)
    assert len(ticks) == steps == 2 + 2 + 8
    assert record["phase"] == "nat" and set(record["predictor_taus"]) == {"rbf", "trees"}
    assert record["predictor_tau"] == record["predictor_taus"][record["predictor"]] == max(
        record["predictor_taus"].values())
    new = search.archive.members[6:]
    assert len(new) == 2 and all(m.iteration == 1 for m in new)
    assert [p["path"] for p in record["picks"]] == [list(m.path) for m in new]
    assert [p["predicted"] for p in record["picks"]] == [m.predicted for m in new]
    assert isinstance(record["adapt_loss"], float)
    rescored = search._evaluate([m.path for m in search.archive.members])
    assert [m.agreement for m in search.archive.members] == [s["agreement"] for s in rescored]
    assert search.history[-1]["iteration"] == 1 and search.history[-1]["predictor_tau"] == record["predictor_tau"]
    x = torch.randn(2, 1, 8, 8)
    search.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(search.probe_forward(search.model, x), search.model(x, [0] * 5), rtol=0, atol=0)


def test_plot_draws_the_archive_by_the_first_cost(tmp_path, monkeypatch):
    """Guards: front.png / hypervolume.png drawn from other costs, scores, front, chosen member,
    limit or labels than the search's."""
    from dfnas.nas.strategies import nat_plots

    drawn = {}
    monkeypatch.setattr(nat_plots, "front_plot", lambda *args: drawn.setdefault("front", args))
    monkeypatch.setattr(nat_plots, "progress_plot", lambda *args: drawn.setdefault("progress", args))
    search = _search(tmp_path, max_macs=_macs(4.5))
    search.archive = _archive()
    search._close_unit(0, None)
    search._close_unit(1, 0.5)
    assert search.plot(tmp_path) == [tmp_path / "front.png", tmp_path / "hypervolume.png"]
    members = search.archive.members
    assert drawn["front"] == (tmp_path / "front.png", [m.costs["macs"] for m in members],
                              [m.agreement for m in members], [m.iteration for m in members], search.front(),
                              search.chosen(), _macs(4.5), "macs (MMACs)", "val agreement with the teacher")
    volumes = [h["hypervolume"] for h in search.history]
    search.metric = "accuracy"  # a search on real (hard-labelled) data
    drawn.clear()
    search.plot(tmp_path)
    assert drawn["front"][-1] == "val accuracy"
    assert drawn["progress"] == (tmp_path / "hypervolume.png", [0, 1], volumes, [None, 0.5])
