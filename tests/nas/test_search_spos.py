"""SPOS: exact BN recalibration, FLOPs-limited evolution, path sampling, and a tiny end-to-end
search through the console script."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
import torch

from dfnas.nas.arch import Architecture
from dfnas.nas.profile import cost_table
from dfnas.nas.search_data import load_search_data
from dfnas.nas.spaces.spos import SposConfig, SposSupernet
from dfnas.nas.strategies import SposSearch, SposSearchConfig
from dfnas.nas.strategies.evaluator import PathEvaluator, batch_norms, calibration_batches, recalibrate_bn
from dfnas.nas.strategies.evolution import Evolution, EvolutionConfig
from dfnas.nas.strategies.spos import single_path_training
from dfnas.data.images import Batch, BatchStream
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.trainer import Trainer

from test_search_data import write_tiny_dataset

CPU = Precision(torch.device("cpu"))
TINY = SposConfig.tiny(in_channels=1, input_size=8, num_classes=4)


def test_bn_recalibration_gives_the_exact_statistics():
    model = SposSupernet(TINY).double()
    path = [1, 0, 3, 2, 1]
    batches = [Batch(torch.randn(6, 1, 8, 8, dtype=torch.float64), None, torch.zeros(6, dtype=torch.long))
               for _ in range(3)]
    # Give the running statistics some history that recalibration must discard.
    model.train()
    for _ in range(2):
        model(3 * torch.randn(6, 1, 8, 8, dtype=torch.float64) + 1, path)
    inputs: dict[torch.nn.Module, list[torch.Tensor]] = {}
    hooks = [bn.register_forward_pre_hook(lambda m, args: inputs.setdefault(m, []).append(args[0].detach()))
             for bn in batch_norms(model)]
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch.images, path)
    for hook in hooks:
        hook.remove()

    recalibrate_bn(model, lambda x: model(x, path), batches, CPU)

    assert inputs and model.training  # the model's mode is restored
    for bn, seen in inputs.items():
        stacked = torch.stack(seen)  # (batches, N, C, H, W)
        mean = stacked.transpose(1, 2).reshape(len(seen), bn.num_features, -1)
        exact_mean = mean.mean(dim=(0, 2))
        exact_var = torch.stack([x.transpose(0, 1).reshape(bn.num_features, -1).var(dim=1) for x in seen]).mean(0)
        torch.testing.assert_close(bn.running_mean, exact_mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(bn.running_var, exact_var, rtol=1e-10, atol=1e-12)
        assert bn.momentum == 0.1
    # Batch order does not matter (a cumulative average, not an EMA).
    means = {bn: bn.running_mean.clone() for bn in inputs}
    recalibrate_bn(model, lambda x: model(x, path), batches[::-1], CPU)
    for bn in inputs:
        torch.testing.assert_close(bn.running_mean, means[bn], rtol=1e-10, atol=1e-12)


def _recalibrated_score(model, forward, trainer, calibration, val) -> dict:
    """What scoring one path means: exact BN statistics from `calibration`, then eval on `val`."""
    recalibrate_bn(model, forward, calibration, trainer.precision)
    model.eval()
    try:
        return trainer.evaluate(forward, val)
    finally:
        model.train()


def test_path_evaluator_recalibrates_bn_before_scoring():
    """Guards against: the evaluator skipping BN recalibration, or recalibrating after scoring."""
    model = SposSupernet(TINY).train()
    path = (2, 0, 1, 3, 1)

    def batch(scale: float) -> Batch:
        return Batch(scale * torch.randn(8, 1, 8, 8), torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    calibration, val = [batch(1.0) for _ in range(2)], [batch(1.0) for _ in range(2)]
    with torch.no_grad():  # statistics of another input distribution, as another path would leave
        model(3 * torch.randn(16, 1, 8, 8) + 2, path)
    trainer = Trainer(LossConfig(), CPU)
    forward = lambda m: (lambda x: m(x, path))  # noqa: E731
    stale = copy.deepcopy(model).eval()
    stale_metrics = trainer.evaluate(forward(stale), val)
    reference = copy.deepcopy(model)
    want = _recalibrated_score(reference, forward(reference), trainer, calibration, val)
    assert abs(want["kl"] - stale_metrics["kl"]) > 1e-3  # the stale statistics change the score

    got = PathEvaluator(model, trainer, calibration, val, metric="kl")(forward(model))
    assert got["kl"] == pytest.approx(want["kl"], rel=1e-6) and got["fitness"] == -got["kl"]
    assert got["agreement"] == want["agreement"]
    assert model.training  # the model's mode is restored
    for bn, ref in zip(batch_norms(model), batch_norms(reference)):
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=1e-6, atol=1e-7)


def test_spos_generation_scores_each_candidate_after_its_own_recalibration(tmp_path):
    """Guards against: a generation scoring candidates with BN statistics left by the previous
    path (recalibration skipped or done after scoring)."""
    _, data = _tiny_data(tmp_path)
    config = SposSearchConfig(space_preset="tiny", epochs=1, steps_per_epoch=2, batch_size=8, calib_batches=2,
                              calib_batch_size=8, val_batch_size=8, fitness="kl",
                              evolution=EvolutionConfig(population=3, top_k=1, generations=1, mutations=0,
                                                        crossovers=0))
    search = SposSearch(config, data, CPU)
    search.run_unit(0, lambda n: None)
    supernet = copy.deepcopy(search.model)  # scoring changes only BN statistics, which each score resets
    record = search.run_unit(1, lambda n: None)
    assert len(record["candidates"]) == 3
    for candidate in record["candidates"]:
        path = tuple(candidate["path"])
        want = _recalibrated_score(supernet, lambda x: supernet(x, path), search.trainer,
                                   search.evaluator.calibration, search.evaluator.val)
        assert candidate["kl"] == pytest.approx(want["kl"], rel=1e-6)
        assert candidate["fitness"] == pytest.approx(-want["kl"], rel=1e-6)


def test_evolution_respects_the_flops_limit():
    table = cost_table("spos", TINY)
    mflops = lambda path: table.cost(list(path)) / 1e6  # noqa: E731
    low = table.fixed_total + sum(min(s.values()) for s in table.slots)
    high = table.fixed_total + sum(max(s.values()) for s in table.slots)
    limit = (low + 0.4 * (high - low)) / 1e6
    config = EvolutionConfig(population=12, top_k=4, generations=5, mutations=4, crossovers=4)
    evolution = Evolution(config, TINY.num_layers, 4, mflops, limit, seed=0)
    # A fitness that rewards FLOPs: without the limit the search would run past it.
    for _ in range(config.generations):
        evaluated = evolution.evaluate_generation(lambda path: mflops(path))
        assert all(e.mflops <= limit for e in evaluated)
    assert len(evolution.archive) > config.population
    assert evolution.best().mflops <= limit
    assert evolution.best().fitness == max(e.fitness for e in evolution.archive.values())
    assert evolution.best().mflops > low / 1e6  # it did climb toward the limit


def test_evolution_breeds_only_from_the_top_k():
    """Guards against: parents drawn from the whole archive (or the last generation) instead of the
    top-k of everything evaluated."""
    layers, choices, k = 6, 4, 3

    def fitness(path):  # distinct values; every path with gene 0 == 0 beats every other path
        return 10.0 * (path[0] == 0) + sum(g * choices ** i for i, g in enumerate(path)) / choices ** layers

    config = EvolutionConfig(population=16, top_k=k, generations=4, mutations=4, crossovers=8, mutation_prob=0.2)
    evolution = Evolution(config, layers, choices, lambda path: float(sum(path)), None, seed=3)
    calls = []
    for name in ("_mutate", "_cross"):
        make = getattr(evolution, name)

        def spy(parents, make=make, name=name):
            child = make(parents)
            scores = sorted((e.fitness for e in evolution.archive.values()), reverse=True)
            calls.append((name, [fitness(p) for p in parents], scores[:k], child))
            return child
        setattr(evolution, name, spy)
    for _ in range(config.generations):
        evolution.evaluate_generation(fitness)
        # top() is the k best of the whole archive, best first.
        assert [e.fitness for e in evolution.top()] == sorted(
            (e.fitness for e in evolution.archive.values()), reverse=True)[:k]
    assert {name for name, *_ in calls} == {"_mutate", "_cross"}
    for name, parent_scores, best_scores, child in calls:
        assert sorted(parent_scores, reverse=True) == best_scores  # exactly the top-k, each once
        if name == "_cross" and all(score >= 10 for score in best_scores):
            assert child[0] == 0  # a crossover child takes each gene from a top-k parent
    assert sum(1 for name, _, best, child in calls if name == "_cross" and min(best) >= 10) >= 8


def _tiny_data(tmp_path):
    root = tmp_path / "ds"
    if not root.exists():
        write_tiny_dataset(root, count=40, num_classes=4)
    return root, load_search_data(str(root), torch.device("cpu"))


def test_impossible_flops_settings_are_refused(tmp_path):
    _, data = _tiny_data(tmp_path)
    with pytest.raises(ValueError, match="flops limit .* is impossible"):
        SposSearch(SposSearchConfig(space_preset="tiny", batch_size=8, flops_limit=1e-6), data, CPU)
    with pytest.raises(ValueError, match="train FLOPs range .* is impossible"):
        SposSearch(SposSearchConfig(space_preset="tiny", batch_size=8, train_flops_range=(100.0, 200.0)), data, CPU)


def test_flops_restricted_sampling_stays_in_range(tmp_path):
    _, data = _tiny_data(tmp_path)
    search = SposSearch(SposSearchConfig(space_preset="tiny", batch_size=8), data, CPU)
    low, high = search.lowest, search.highest
    band = (low + 0.3 * (high - low), low + 0.6 * (high - low))
    search = SposSearch(SposSearchConfig(space_preset="tiny", batch_size=8, train_flops_range=band), data, CPU)
    for _ in range(30):
        assert band[0] <= search.mflops(search.sample_path()) <= band[1]


SMALL = ["--epochs", "2", "--batch-size", "8", "--evolution-population", "6", "--evolution-top-k", "2",
         "--evolution-generations", "2", "--evolution-mutations", "2", "--evolution-crossovers", "2",
         "--calib-batches", "2", "--calib-batch-size", "8", "--val-batch-size", "8",
         "--channels-last", "off", "--amp", "off", "--quiet"]


def _console() -> list[str]:
    script = shutil.which("dfnas-search")
    return [script] if script else [sys.executable, "-m", "dfnas.cli.search"]


def test_console_script_end_to_end_and_kill_resume(tmp_path):
    root, _ = _tiny_data(tmp_path)
    common = ["spos", "--data", str(root), *SMALL, "--flops-limit", "0.06", "--threads", "1"]
    full = subprocess.run(_console() + common, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    out = tmp_path / "search-spos"  # the default --out, relative to the working directory
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["derived"]["flops"] <= 0.06e6
    Architecture.from_dict(arch).build().eval()(torch.zeros(1, 1, 8, 8))
    assert (out / "evolution.png").stat().st_size > 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["supernet", "supernet", "evolution", "evolution"]
    candidates = [c for r in records[2:] for c in r["candidates"]]
    assert len(candidates) >= 6 and all(c["mflops"] <= 0.06 for c in candidates)  # (vacuous if none)

    split = ["--out", "split"]
    stopped = subprocess.run(_console() + common + split + ["--stop-after", "3"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "split" / "architecture.json").exists()
    resumed = subprocess.run(_console() + common + split + ["--resume"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "split" / "architecture.json").read_text()) == arch
    assert (tmp_path / "split" / "log.jsonl").read_text() == (out / "log.jsonl").read_text()


def test_single_path_training_is_set_up_as_configured(tmp_path):
    """Guards SPOS's training setup (mutation testing found it unchecked): weight decay on weights
    of ndim > 1 only and none on BN/bias, the configured lr, momentum and clip, the per-step
    linear decay to 0 at the last step, and the seed offsets of the batch stream, the path
    sampler and the calibration batches (another offset changes every search's result)."""
    _, data = _tiny_data(tmp_path)
    config = SposSearchConfig(space_preset="tiny", batch_size=8, lr=0.3, momentum=0.8, weight_decay=1e-3,
                              grad_clip=2.0, epochs=2, steps_per_epoch=5, calib_batches=2, calib_batch_size=8, seed=7)
    # conv (4-d), BN and bias (1-d), linear (2-d): the SPOS supernet has no 1-d parameter
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    trainer, optimizer, stream, scheduler, sampler, evaluator = single_path_training(model, config, data, CPU)
    assert trainer.grad_clip == 2.0
    decay, no_decay = optimizer.param_groups
    assert [id(p) for p in decay["params"]] == [id(p) for p in model.parameters() if p.ndim > 1]
    assert [id(p) for p in no_decay["params"]] == [id(p) for p in model.parameters() if p.ndim <= 1]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-3, 0.0)
    assert all(g["lr"] == pytest.approx(0.3) and g["momentum"] == 0.8 for g in optimizer.param_groups)
    assert [scheduler.lr_lambdas[0](step) for step in (0, 5, 10, 12)] == [1.0, 0.5, 0.0, 0.0]  # 2 x 5 steps
    assert torch.equal(stream.generator.get_state(), BatchStream(data.train, 8, 8).generator.get_state())
    assert torch.equal(sampler.get_state(), torch.Generator().manual_seed(10).get_state())
    expected = calibration_batches(data.train, 8, 2, 11)
    assert len(evaluator.calibration) == 2
    assert all(torch.equal(a.images, b.images) for a, b in zip(evaluator.calibration, expected))
