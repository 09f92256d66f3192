"""The SPOS search loop unit by unit: its setup, each supernet epoch's and generation's record,
the resume state, the final metrics, the architecture and the plot. Each test names the bug it
guards against (found by mutation testing, docs/testing.md, spos group)."""
from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch

import dfnas.nas.strategies.plots as plots
import dfnas.nas.strategies.spos as spos
from dfnas.nas.arch import make_architecture
from dfnas.nas.profile import cost_table
from dfnas.nas.strategies import SposSearch, SposSearchConfig
from dfnas.nas.strategies.evolution import EvolutionConfig
from dfnas.device import Precision

from test_search_spos import _recalibrated_score, _tiny_data

CPU = Precision(torch.device("cpu"))


def _config(**changes) -> SposSearchConfig:
    settings = dict(space_preset="tiny", epochs=2, steps_per_epoch=3, batch_size=8, lr=0.2, calib_batches=2,
                    calib_batch_size=8, val_batch_size=8, seed=5,
                    evolution=EvolutionConfig(population=6, top_k=2, generations=2, mutations=2, crossovers=2))
    settings.update(changes)
    return SposSearchConfig(**settings)


def _all_mflops(search: SposSearch) -> list[float]:
    layers, choices = search.space_config.num_layers, search.space_config.num_choices
    return [search.mflops(path) for path in itertools.product(range(choices), repeat=layers)]


def test_setup_bounds_probes_evolution_and_units(tmp_path):
    """Guards against: wrong MFLOPs bounds or cost scale, probe paths from another seed or of
    another count, the evolution built with another seed / limit / gene count, a miscounted
    number of units or steps per unit."""
    _, data = _tiny_data(tmp_path)
    search = SposSearch(_config(flops_limit=0.07), data, CPU)
    table = cost_table("spos", search.space_config)
    path = (1, 0, 3, 2, 1)
    assert search.mflops(path) == table.cost(list(path)) / 1e6
    every = _all_mflops(search)
    assert (search.lowest, search.highest) == pytest.approx((min(every), max(every)), rel=1e-12)
    assert search.unit_name == "unit" and search.num_units == 2 + 2
    assert [search.unit_steps(u) for u in range(4)] == [3, 3, 6, 6]

    probes = torch.Generator().manual_seed(5 + 6)
    layers, choices = search.space_config.num_layers, search.space_config.num_choices
    assert search.probe_paths == [tuple(torch.randint(choices, (layers,), generator=probes).tolist())
                                  for _ in range(spos.SUPERNET_PROBES)]
    assert len(set(search.probe_paths)) == spos.SUPERNET_PROBES
    evolution = search.evolution
    assert (evolution.num_layers, evolution.num_choices, evolution.flops_limit) == (layers, choices, 0.07)
    assert torch.equal(evolution.generator.get_state(),
                       spos.Evolution(_config().evolution, layers, choices, search.mflops, 0.07,
                                      5 + 5).generator.get_state())
    assert evolution.mflops(path) == search.mflops(path)
    # The precision probe times the forward the training steps run: one path through the supernet.
    images = torch.randn(2, 1, 8, 8)
    search.model.eval()
    assert torch.equal(search.probe_forward(search.model, images), search.model(images, [0] * layers))
    # The supernet's initial weights come from the configured seed.
    other = SposSearch(_config(seed=6), data, CPU)
    again = SposSearch(_config(), data, CPU)
    first = next(iter(search.model.parameters()))
    assert torch.equal(first, next(iter(again.model.parameters())))
    assert not torch.equal(first, next(iter(other.model.parameters())))


def test_flops_settings_are_refused_only_when_impossible(tmp_path):
    """Guards against: off-by-one comparisons at the bounds (a limit equal to the cheapest path,
    a training range touching the space at one end) and messages without the space's span."""
    _, data = _tiny_data(tmp_path)
    low, high = SposSearch(_config(), data, CPU).lowest, SposSearch(_config(), data, CPU).highest
    SposSearch(_config(flops_limit=low), data, CPU)
    SposSearch(_config(train_flops_range=(0.0, low)), data, CPU)
    SposSearch(_config(train_flops_range=(high, 2 * high)), data, CPU)
    span = f"this space's architectures have {low:.4g} to {high:.4g} MFLOPs"
    with pytest.raises(ValueError) as limit:
        SposSearch(_config(flops_limit=low * 0.999), data, CPU)
    assert str(limit.value) == f"flops limit {low * 0.999:.4g} MFLOPs is impossible: {span}"
    with pytest.raises(ValueError) as below:
        SposSearch(_config(train_flops_range=(0.0, low * 0.999)), data, CPU)
    assert str(below.value) == f"train FLOPs range {0.0:.4g}..{low * 0.999:.4g} MFLOPs is impossible: {span}"
    with pytest.raises(ValueError, match="train FLOPs range .* is impossible"):
        SposSearch(_config(train_flops_range=(high * 1.001, 3 * high)), data, CPU)
    with pytest.raises(ValueError, match=r"is empty \(min > max\)"):
        _config(train_flops_range=(2.0, 1.0)).check()


def test_sample_path_draws_uniformly_from_its_generator_and_gives_up_after_the_tries(tmp_path, monkeypatch):
    """Guards against: paths drawn with the global RNG or another generator, a rejection test
    that lets paths outside the range through (or rejects its end points), and a sampler that
    loops forever or gives up early on a range no path falls in."""
    _, data = _tiny_data(tmp_path)
    search = SposSearch(_config(), data, CPU)
    layers, choices = search.space_config.num_layers, search.space_config.num_choices
    twin = torch.Generator().manual_seed(5 + 3)
    for _ in range(5):
        assert search.sample_path() == tuple(torch.randint(choices, (layers,), generator=twin).tolist())
    # A range of exactly one attainable cost, whose paths sit on both its ends.
    every = sorted(set(_all_mflops(search)))
    target = every[len(every) // 2]
    narrow = SposSearch(_config(train_flops_range=(target, target)), data, CPU)
    assert all(narrow.mflops(narrow.sample_path()) == target for _ in range(5))
    # A range between two attainable costs: no path, a one-line error after SAMPLING_TRIES draws.
    gap = SposSearch(_config(train_flops_range=((every[0] + every[1]) / 2,) * 2), data, CPU)
    monkeypatch.setattr(spos, "SAMPLING_TRIES", 7)
    before = gap.sampler.get_state()
    with pytest.raises(ValueError, match="no path within train_flops_range .* after 7 uniform draws; widen the range"):
        gap.sample_path()
    drawn = torch.Generator()
    drawn.set_state(before)
    for _ in range(7):
        torch.randint(choices, (layers,), generator=drawn)
    assert torch.equal(gap.sampler.get_state(), drawn.get_state())  # exactly 7 draws


def test_supernet_epoch_trains_the_sampled_paths_and_reports_the_probes(tmp_path):
    """Guards against: an epoch of another length, the scheduler stepped per epoch instead of
    per step, a path other than the sampled one trained, the record's lr / mean loss / probe
    metrics wrong (e.g. the last probe's, not their mean), the model left in eval mode, and the
    batch notice repeated after the first epoch."""
    _, data = _tiny_data(tmp_path)
    search = SposSearch(_config(batch_size=32, steps_per_epoch=None, epochs=2), data, CPU)
    assert search.notices  # 32 of the tiny dataset's 40 images: one step per epoch, refitted
    steps = search.unit_steps(0)
    sampled, trained, losses, ticks = [], [], [], []
    sample, forward, step = search.sample_path, search.path_forward, search.trainer.step

    def spy_sample():
        sampled.append(sample())
        return sampled[-1]

    def spy_forward(path):
        trained.append(tuple(path))
        return forward(path)

    def spy_step(*args, **kwargs):
        losses.append(step(*args, **kwargs))
        return losses[-1]
    search.sample_path, search.path_forward, search.trainer.step = spy_sample, spy_forward, spy_step
    records = []
    for unit in range(2):
        lr = search.optimizer.param_groups[0]["lr"]
        records.append(search.run_unit(unit, ticks.append))
        assert records[-1]["lr"] == lr
        assert search.model.training
        supernet = copy.deepcopy(search.model)
        probes = [_recalibrated_score(supernet, lambda x, p=p: supernet(x, p), search.trainer,
                                      search.evaluator.calibration, search.evaluator.val) for p in search.probe_paths]
        for key in ("agreement", "kl"):
            assert search.last_metrics[key] == pytest.approx(sum(p[key] for p in probes) / len(probes), rel=1e-6)
        assert records[-1][f"val_{search.metric}"] == search.last_metrics["agreement"]
        assert records[-1]["val_kl"] == search.last_metrics["kl"]
        assert records[-1]["phase"] == "supernet"
    assert ticks == [1] * (2 * steps)
    # Each step trains the path just sampled; after the steps, the probes are scored.
    assert trained == sampled[:steps] + search.probe_paths + sampled[steps:] + search.probe_paths
    assert records[0]["train_loss"] == pytest.approx(sum(losses[:steps]) / steps)
    assert records[1]["train_loss"] == pytest.approx(sum(losses[steps:]) / steps)
    total = 2 * steps
    assert search.optimizer.param_groups[0]["lr"] == pytest.approx(search.config.lr * max(0.0, 1 - total / total))
    assert records[1]["lr"] == pytest.approx(search.config.lr * (1 - steps / total))
    assert records[0]["notice"] == "; ".join(search.notices) and "notice" not in records[1]


def test_supernet_epoch_clips_the_gradient_of_the_sampled_path(tmp_path, monkeypatch):
    """Guards against: the epoch's steps not handing the parameters to clip to the trainer, so
    `grad_clip` is silently ignored (SPOS does not clip by default)."""
    _, data = _tiny_data(tmp_path)
    search = SposSearch(_config(grad_clip=0.5, epochs=1, steps_per_epoch=2), data, CPU)
    clipped = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        clipped.append(({id(p) for p in params}, max_norm))
        return clip(params, max_norm, *args, **kwargs)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    search.run_unit(0, lambda n: None)
    assert len(clipped) == 2 and all(max_norm == 0.5 for _, max_norm in clipped)
    with_grad = {id(p) for p in search.model.parameters() if p.grad is not None}
    assert clipped[-1][0] == with_grad and 0 < len(with_grad) < len(list(search.model.parameters()))


def test_generation_record_and_best_metrics(tmp_path):
    """Guards against: a generation record with the wrong counts, best, candidates' KL or top-k,
    and the best's metrics overwritten by a later generation that did not beat it."""
    _, data = _tiny_data(tmp_path)
    search = SposSearch(_config(epochs=1), data, CPU)
    search.run_unit(0, lambda n: None)
    scored = {}
    score_each = search.evaluator.score_each

    def spy(forwards):
        results = score_each(forwards)
        scored.update(zip(list(search.evolution.candidates), results))
        return results
    search.evaluator.score_each = spy
    ticks = []
    first = search.run_unit(1, ticks.append)
    best = search.evolution.best()
    assert first["phase"] == "evolution" and first["evaluated"] == len(first["candidates"]) == 6
    assert sum(ticks) == 6
    assert [tuple(c["path"]) for c in first["candidates"]] == list(scored)
    for candidate in first["candidates"]:
        result = scored[tuple(candidate["path"])]
        assert (candidate["fitness"], candidate["kl"]) == (result["fitness"], result["kl"])
        assert candidate["mflops"] == search.mflops(tuple(candidate["path"])) and candidate["generation"] == 0
    assert (first["best_fitness"], first["best_mflops"], first["best_path"]) == (best.fitness, best.mflops,
                                                                                 list(best.path))
    assert first[f"val_{search.metric}"] == scored[best.path]["agreement"]
    assert first["val_kl"] == scored[best.path]["kl"]
    assert first["top_k"] == [e.to_dict() for e in search.evolution.top()]
    assert len(first["top_k"]) == 2

    # A second generation whose candidates all score worst keeps the first winner's metrics.
    search.evaluator.score_each = lambda forwards: [{"fitness": -1.0, "agreement": 0.0, "kl": 9.0}
                                                    for _ in forwards]
    second = search.run_unit(2, lambda n: None)
    assert second["best_path"] == list(best.path)
    assert (second[f"val_{search.metric}"], second["val_kl"]) == (first[f"val_{search.metric}"], first["val_kl"])
    assert all(c["kl"] == 9.0 and c["generation"] == 1 for c in second["candidates"])


def test_final_metrics_come_from_the_probes_then_the_winner(tmp_path):
    """Guards against: final metrics reported before any unit, from the wrong source, or without
    the metric's name, the class count or what they were measured on."""
    _, data = _tiny_data(tmp_path)
    search = SposSearch(_config(epochs=1), data, CPU)
    assert search.final_metrics() == {}
    search.run_unit(0, lambda n: None)
    probes = search.final_metrics()
    assert probes == {"metric": search.metric, search.metric: search.last_metrics["agreement"],
                      **search.last_metrics, "num_classes": 4,
                      "measured_on": f"{spos.SUPERNET_PROBES} random paths of the supernet"}
    record = search.run_unit(1, lambda n: None)
    winner = search.final_metrics()
    assert winner == {"metric": search.metric, search.metric: record[f"val_{search.metric}"],
                      "agreement": record[f"val_{search.metric}"], "kl": record["val_kl"], "num_classes": 4,
                      "measured_on": "the evolution's winner"}


def test_resume_from_a_state_dict_continues_as_if_uninterrupted(tmp_path):
    """Guards against: any piece of the search state not saved or not restored (supernet,
    optimizer, schedule, trainer, batch stream, path sampler, evolution, the last and best
    metrics)."""
    _, data = _tiny_data(tmp_path)
    full = SposSearch(_config(), data, CPU)
    want = [full.run_unit(unit, lambda n: None) for unit in range(4)]

    first = SposSearch(_config(), data, CPU)
    fresh = SposSearch(_config(), data, CPU)
    fresh.load_state_dict(first.state_dict())  # a search can be saved before its first unit
    assert fresh.final_metrics() == {}
    got = [first.run_unit(unit, lambda n: None) for unit in range(3)]
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = SposSearch(_config(), data, CPU)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    assert resumed.final_metrics() == first.final_metrics() != {}
    assert resumed.last_metrics == first.last_metrics
    got.append(resumed.run_unit(3, lambda n: None))
    assert got == want
    assert resumed.final_metrics() == full.final_metrics()
    for a, b in zip(resumed.state_dict()["model"].values(), full.state_dict()["model"].values()):
        assert torch.equal(a, b)
    assert resumed.optimizer.state_dict()["state"].keys() == full.optimizer.state_dict()["state"].keys()
    assert resumed.scheduler.last_epoch == full.scheduler.last_epoch
    assert resumed.architecture().to_dict() == full.architecture().to_dict()
    # A checkpoint without the metrics (written before they were saved) resumes with none.
    older = {key: value for key, value in first.state_dict().items() if not key.endswith("_metrics")}
    blank = SposSearch(_config(), data, CPU)
    blank.load_state_dict(older)
    assert blank.last_metrics == {} and blank.best_metrics == {} and blank.final_metrics() == {}


def test_architecture_and_plot_show_the_evolution_winner(tmp_path, monkeypatch):
    """Guards against: the architecture or the plot's star taken from another candidate than the
    evolution's best, and the plot's points, limit or axis label wrong."""
    _, data = _tiny_data(tmp_path)
    calls = []
    monkeypatch.setattr(plots, "pareto_scatter", lambda *args: calls.append(args))
    real = dataclasses.replace(data, train=dataclasses.replace(data.train, soft_labels=None),
                               val=dataclasses.replace(data.val, soft_labels=None))  # hard labels, as real data
    for fitness, images, label in (("agreement", data, "val agreement with the teacher"),
                                   ("agreement", real, "val accuracy"), ("kl", data, "-KL")):
        search = SposSearch(_config(epochs=1, flops_limit=0.07, fitness=fitness), images, CPU)
        for unit in range(3):
            search.run_unit(unit, lambda n: None)
        best = search.evolution.best()
        assert search.architecture().to_dict() == make_architecture("spos", search.space_config, best.path).to_dict()
        assert search.plot(tmp_path) == [tmp_path / "evolution.png"]
        path, flops, fitnesses, generations, star, limit, ylabel, title = calls[-1]
        entries = list(search.evolution.archive.values())
        assert path == tmp_path / "evolution.png" and len(entries) == 12
        assert (flops, fitnesses, generations) == ([e.mflops for e in entries], [e.fitness for e in entries],
                                                   [e.generation for e in entries])
        assert star == (best.mflops, best.fitness) and limit == 0.07
        assert ylabel == label and title == "SPOS evolution: evaluated candidates"
