"""Search under torchrun: two gloo CPU processes against one process on the same seed.

Two processes cannot add floats in the order one process does (the gradient of a batch is the
mean of two half-batch gradients; BN statistics are sums of two halves), so trained weights agree
to rounding, not bit for bit: `WEIGHT_TOLERANCE` (measured differences after the few steps of
these runs were below 1e-6; half-batch BN or unaveraged gradients differ by 1e-2 and more). Scores
of whole candidates shared out over the ranks are computed exactly as one process does, so they
are compared for equality.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dfnas.checkpoint import state_digest
from dfnas.config import UsageError, apply
from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.distributed import World, current_world
from dfnas.nas.global_batch import whole_batch
from dfnas.nas.loss import LossConfig
from dfnas.nas.search_run import RunOptions, check_splittable, search, strategy_config
from dfnas.nas.spaces.darts_fused import ScaledBatchNorm2d
from dfnas.nas.spaces.spos import SposConfig, SposSupernet
from dfnas.nas.strategies.evaluator import PathEvaluator
from dfnas.nas.trainer import Trainer

from test_search_data import write_tiny_dataset

WEIGHT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
# Optimizer states (momentum buffers, Adam moments) are sums of recent gradients: those respond to
# rounding in the weights far more than the weights themselves (relative 1e-3 on small gradients).
GRADIENT_TOLERANCE = {"rtol": 1e-2, "atol": 1e-3}
# Second-order DARTS divides a difference of two gradients by 2r (the finite-difference
# Hessian-vector product, r = 0.01 / |v|), amplifying their rounding: a batch norm whose variance
# is summed in another order moved its weight gradients by 1e-3 within two steps.
LOOSER = {"darts2": ({"rtol": 1e-3, "atol": 1e-4}, {"rtol": 1e-2, "atol": 1e-2})}
OPTIONS = RunOptions(threads="1", channels_last="off", amp="off")  # nothing measured: same choice everywhere
# Learning rates far below the presets' and few steps: at the presets' rates a tiny supernet on
# batches of 8 is chaotic (a 1e-7 relative change of the initial weights grew to differences of 5
# within 6 SPOS steps), and Adam's first steps on the alphas move by about lr * sign(gradient), so
# a rounding-size gradient component near zero can flip a step (DARTS with 2 x 2 steps: alphas
# 7e-5 apart after one such step, weight gradients 2e-2 apart a step later). Either way no
# tolerance could tell rounding from a bug.
CASES = {
    "spos": ("spos", {"epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "lr": 0.01, "calib_batches": 2,
                      "calib_batch_size": 8, "val_batch_size": 8,
                      "evolution": {"population": 5, "top_k": 2, "generations": 1, "mutations": 1, "crossovers": 1}}),
    "darts1": ("darts", {"epochs": 2, "warmup_epochs": 0, "steps_per_epoch": 1, "batch_size": 8, "lr": 0.01,
                         "arch_lr": 0.01, "calib_batches": 2}),
    "darts2": ("darts", {"order": 2, "epochs": 1, "warmup_epochs": 0, "steps_per_epoch": 2, "batch_size": 8,
                         "lr": 0.01, "arch_lr": 0.01, "calib_batches": 2}),
    "proxyless": ("proxyless", {"epochs": 2, "warmup_epochs": 0, "steps_per_epoch": 2, "arch_every": 1,
                                "batch_size": 8, "lr": 0.01, "arch_lr": 0.01, "calib_batches": 3,
                                "calib_batch_size": 8}),
    "nat": ("nat", {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "lr": 0.01, "calib_batches": 2,
                    "calib_batch_size": 8, "val_batch_size": 8, "initial_samples": 5, "iterations": 1, "picks": 3,
                    "nsga_population": 8, "nsga_generations": 2, "cv_folds": 3, "predictors": "rbf,trees",
                    "adapt_epochs": 1, "adapt_lr": 0.01}),
}
CASES["nat-proxyless"] = ("nat", {**CASES["nat"][1], "space": "proxyless"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join(rank: int, port: int, cache: str) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), DFNAS_CACHE_DIR=cache)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)


def _case_config(case: str):
    name, overrides = CASES[case]
    return name, apply(strategy_config(name, "tiny"), overrides, "test")


# ---------------------------------------------------------------------------- in one process

def test_rows_split_evenly_and_searches_that_cannot_split_are_refused():
    """check_splittable: a batch of 9 over 2 processes would give ranks unequal rows (their mean
    is then not the batch's gradient); a latency measured by each process differs per process."""
    assert [World(rank, 2).my_rows(8) for rank in (0, 1)] == [slice(0, 4), slice(4, 8)]
    with pytest.raises(ValueError, match="do not split evenly"):
        World(0, 2).my_rows(9)
    two = World(0, 2)
    with pytest.raises(UsageError, match="does not split evenly"):
        check_splittable(apply(strategy_config("spos"), {"batch_size": 9}, "test"), two)
    for name, latency in (("proxyless", {"hw_metric": "latency"}), ("nat", {"objectives": "latency"})):
        with pytest.raises(UsageError, match="--latency-table"):
            check_splittable(apply(strategy_config(name), latency, "test"), two)
        check_splittable(apply(strategy_config(name), {**latency, "latency_table": "table.json"}, "test"), two)


def test_state_digest_tells_states_apart():
    """checkpoint.state_digest: ranks whose states differ in one bit must not agree."""
    state = {"model": {"w": torch.zeros(3)}, "rng": [1, 2], "name": "spos"}
    assert state_digest(state) == state_digest({"name": "spos", "rng": [1, 2], "model": {"w": torch.zeros(3)}})
    flipped = {**state, "model": {"w": torch.tensor([0.0, -0.0, 0.0])}}
    assert state_digest(flipped) != state_digest(state)
    assert state_digest({**state, "rng": [1, 3]}) != state_digest(state)
    assert state_digest({**state, "model": {"w": torch.zeros(3, dtype=torch.float64)}}) != state_digest(state)


# ---------------------------------------------------------------------------- batch norm and evaluation

def _bn_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {"x": 2 * torch.randn(8, 3, 4, 4, generator=generator, dtype=torch.float64) + 1.5,
            "upstream": torch.randn(8, 3, 4, 4, generator=generator, dtype=torch.float64),
            "weight": torch.rand(3, generator=generator, dtype=torch.float64) + 0.5,
            "bias": torch.randn(3, generator=generator, dtype=torch.float64)}


def _bn_results(rows: slice, synchronized: bool) -> dict[str, torch.Tensor]:
    """Forward, input and parameter gradients and running statistics of a BN on `rows`; and of
    the fused DARTS BN, whose scale (folded mixing weights) is an input with a gradient."""
    inputs = _bn_inputs()
    world = current_world() if synchronized else World()  # one process: plain torch BN
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(inputs["weight"])
        bn.bias.copy_(inputs["bias"])
    scaled = ScaledBatchNorm2d(3).double()
    x = inputs["x"][rows].clone().requires_grad_()
    scale = inputs["weight"].clone().requires_grad_()
    with whole_batch(world):
        y = bn(x)
        z = scaled(x, scale)
    ((y + 2 * z) * inputs["upstream"][rows]).sum().backward()
    return {"y": y.detach(), "z": z.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad,
            "bias_grad": bn.bias.grad, "scale_grad": scale.grad, "running_mean": bn.running_mean,
            "running_var": bn.running_var, "scaled_running_var": scaled.running_var}


def _dropped(rows: slice, world: World) -> torch.Tensor:
    """Dropout (p = 0.3) of `rows` of a fixed batch, the global RNG seeded as every rank seeds it."""
    x = torch.randn(8, 5, 3, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(11)
    with whole_batch(world):
        return nn.Dropout(0.3)(x[rows])


def _evaluator(trainer: Trainer) -> tuple[PathEvaluator, list[list[int]]]:
    torch.manual_seed(0)
    model = SposSupernet(SposConfig.tiny(1, 8, 4))
    generator = torch.Generator().manual_seed(5)

    def batch(size: int) -> Batch:
        return Batch(torch.randn(size, 1, 8, 8, generator=generator), torch.randn(size, 4, generator=generator),
                     torch.randint(4, (size,), generator=generator))

    calibration, val = [batch(6) for _ in range(3)], [batch(5) for _ in range(3)]
    # Four paths over two ranks: the last is rank 1's, so the BN statistics it leaves come from rank 1.
    paths = [[int(k) for k in torch.randint(4, (model.config.num_layers,), generator=generator)] for _ in range(4)]
    return PathEvaluator(model, trainer, calibration, val, "kl"), paths


def _evaluations(evaluator: PathEvaluator, paths: list[list[int]]) -> dict:
    forwards = [lambda x, p=p: evaluator.model(x, p) for p in paths]
    each = evaluator.score_each(forwards)
    left_behind = {k: v.clone() for k, v in evaluator.model.state_dict().items()}
    return {"each": each, "left_behind": left_behind, "one": evaluator(forwards[0]),
            "one_stats": {k: v.clone() for k, v in evaluator.model.state_dict().items()}}


def _unit_worker(rank: int, folder: str, port: int) -> None:
    _join(rank, port, folder)
    try:
        world = current_world()
        results = {"bn": _bn_results(world.my_rows(8), True), "plain_bn": _bn_results(world.my_rows(8), False)}
        results["bn"]["weight_grad"], results["bn"]["bias_grad"], results["bn"]["scale_grad"] = world.summed(
            [results["bn"][k] for k in ("weight_grad", "bias_grad", "scale_grad")])
        results["dropout"] = _dropped(world.my_rows(8), world)
        results["evaluations"] = _evaluations(*_evaluator(Trainer(LossConfig(), Precision(torch.device("cpu")))))
        torch.save(results, Path(folder, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def unit_results(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("units")
    mp.spawn(_unit_worker, args=(str(folder), _free_port()), nprocs=2, join=True)
    return [torch.load(folder / f"{rank}.pt", weights_only=False) for rank in (0, 1)]


def test_global_batch_norm_equals_full_batch_norm_forward_and_backward(unit_results):
    """global_batch: per-rank statistics (or a variance, a gradient of the statistics, or a running
    variance that is not reduced over the ranks) would not match BN of the whole batch."""
    full = _bn_results(slice(0, 8), synchronized=False)
    for rank, results in enumerate(unit_results):
        rows = slice(4 * rank, 4 * rank + 4)
        got = results["bn"]
        for key in ("y", "z", "x_grad"):
            torch.testing.assert_close(got[key], full[key][rows], rtol=1e-10, atol=1e-12, msg=f"{key} rank {rank}")
        for key in ("weight_grad", "bias_grad", "scale_grad", "running_mean", "running_var", "scaled_running_var"):
            torch.testing.assert_close(got[key], full[key], rtol=1e-10, atol=1e-12, msg=f"{key} rank {rank}")
    # The check can fail: BN on each rank's half alone is far from the whole batch's.
    plain = unit_results[0]["plain_bn"]
    assert not torch.allclose(plain["y"], full["y"][0:4], atol=1e-3)
    assert not torch.allclose(plain["running_var"], full["running_var"], atol=1e-3)


def test_global_dropout_drops_what_one_process_drops(unit_results):
    """global_batch.global_dropout: a mask drawn for the rank's rows only (each rank then drops
    the first rows' pattern) differs from one process's mask for the whole batch."""
    full = _dropped(slice(0, 8), World())
    assert 0 < int((full == 0).sum()) < full.numel()
    for rank, results in enumerate(unit_results):
        assert torch.equal(results["dropout"], full[4 * rank:4 * rank + 4])


def test_scores_shared_out_over_ranks_equal_one_process_in_order(unit_results):
    """evaluator.score_each: a rank scoring the wrong share, scores gathered out of order, or BN
    statistics left from another candidate than the last (ranks then disagree) fail here."""
    single = _evaluations(*_evaluator(Trainer(LossConfig(), Precision(torch.device("cpu")))))
    for results in unit_results:
        got = results["evaluations"]
        assert got["each"] == single["each"]  # whole candidates: the same arithmetic as one process
        for key, value in single["left_behind"].items():
            assert torch.equal(got["left_behind"][key], value), key
        # One candidate split over the ranks: recalibration statistics combined, val sums added.
        assert got["one"]["agreement"] == single["one"]["agreement"]
        assert got["one"]["kl"] == pytest.approx(single["one"]["kl"], rel=1e-6)
        for key, value in single["one_stats"].items():
            torch.testing.assert_close(got["one_stats"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert unit_results[0]["evaluations"]["one"] == unit_results[1]["evaluations"]["one"]


# ---------------------------------------------------------------------------- whole searches

def _search_worker(rank: int, folder: str, port: int) -> None:
    _join(rank, port, str(Path(folder, "cache")))
    try:
        for case in CASES:
            name, config = _case_config(case)
            # Rank 1 is given an --out of its own: a rank that wrote anything would create it.
            out = Path(folder, case if rank == 0 else f"{case}-rank1")
            search(name, config, str(Path(folder, "ds")), out, OPTIONS, progress_bar=False, echo=lambda m: None)
        # Precision and threads left to measurement ('auto'): rank 0 measures, every rank follows.
        name, config = _case_config("spos")
        search(name, config, str(Path(folder, "ds")), Path(folder, "spos-auto" if rank == 0 else "spos-auto-rank1"),
               RunOptions(), progress_bar=False, echo=lambda m: None)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("searches")
    write_tiny_dataset(folder / "ds", count=60, num_classes=4)
    mp.spawn(_search_worker, args=(str(folder), _free_port()), nprocs=2, join=True)
    return folder


def _state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def _tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """The floating-point tensors of a nested checkpoint state, by dotted name."""
    found = {}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, list) else []
    for key, value in items:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            found[f"{prefix}{key}"] = value
        elif isinstance(value, (dict, list)):
            found.update(_tensors(value, f"{prefix}{key}."))
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_search_as_one_process(two_processes, tmp_path, case):
    """trainer/global_batch/evaluator under torchrun, per strategy: unaveraged gradients (weights or
    architecture parameters), half-batch BN, ranks sampling different paths, or candidate scores
    gathered out of order change the weights, the alphas or the architecture; rank 1 writing
    anything creates its own --out."""
    name, config = _case_config(case)
    single = tmp_path / "single"
    search(name, config, str(two_processes / "ds"), single, OPTIONS, progress_bar=False, echo=lambda m: None)
    multi = two_processes / case
    assert not (two_processes / f"{case}-rank1").exists()
    one, two = _state(single), _state(multi)
    assert two["run_config"]["processes"] == 2 and "processes" not in one["run_config"]
    expected, got = _tensors(one["strategy"]), _tensors(two["strategy"])
    assert expected.keys() == got.keys() and expected
    weights, gradients = LOOSER.get(case, (WEIGHT_TOLERANCE, GRADIENT_TOLERANCE))
    for key in expected:
        tolerance = gradients if "optimizer." in key else weights
        torch.testing.assert_close(got[key], expected[key], **tolerance, msg=key)
    architectures = [json.loads((out / "architecture.json").read_text()) for out in (single, multi)]
    assert architectures[0] == architectures[1]
    records = [[json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] for out in (single, multi)]
    assert [r.keys() for r in records[0]] == [r.keys() for r in records[1]]
    for one_record, two_record in zip(*records):  # the discrete fields (phases, counts, paths, genotypes)
        assert {k: v for k, v in one_record.items() if _discrete(v)} == \
            {k: v for k, v in two_record.items() if _discrete(v)}


def _discrete(value) -> bool:
    """An int, string or bool, or a list or dict of only those (no float anywhere)."""
    if isinstance(value, (list, tuple)):
        return all(_discrete(v) for v in value)
    if isinstance(value, dict):
        return all(_discrete(v) for v in value.values())
    return isinstance(value, (int, str))


def test_auto_precision_is_measured_by_rank_0_and_followed_by_all(two_processes):
    """search_run._agreed_setup: ranks measuring on their own (or rank 1 keeping fp32 while rank 0
    picked another precision) train different supernets: the ranks' state digests then differ
    and the run stops before writing an architecture."""
    out = two_processes / "spos-auto"
    assert (out / "architecture.json").exists() and not (two_processes / "spos-auto-rank1").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["threads"] == 1 and config["processes"] == 2  # torchrun's thread count, not measured
    assert "precision" in config and not any(key.startswith("threads=") for key in config["measured_step_seconds"])


NEUTRAL_CWD = Path(__file__).resolve().parents[2] / "tests"


def _torchrun(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DFNAS_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(NEUTRAL_CWD.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "dfnas.cli.search", *args], capture_output=True, text=True, env=env, timeout=300)


def test_torchrun_cli_resume_after_stop_equals_the_uninterrupted_run(two_processes, tmp_path):
    """base.run_search under torchrun: a resume that loaded the checkpoint on rank 0 only, or
    restored a different state than rank 0 saved, ends with other weights or another winner."""
    _, overrides = CASES["spos"]
    evolution = overrides["evolution"]
    flags = ["spos", "--data", str(two_processes / "ds"), "--out", str(tmp_path / "out"), "--quiet",
             "--threads", "1", "--channels-last", "off", "--amp", "off"]
    for key, value in {**overrides, **{f"evolution-{k}": v for k, v in evolution.items()}}.items():
        if key != "evolution":
            flags += [f"--{key.replace('_', '-')}", str(value)]
    flags = [flag.replace("--evolution-top_k", "--evolution-top-k") for flag in flags]
    stopped = _torchrun(*flags, "--stop-after", "1", cache=tmp_path / "cache")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert not (tmp_path / "out" / "architecture.json").exists()
    resumed = _torchrun(*flags, "--resume", cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("winner ->") == 1  # rank 0 alone reports
    uninterrupted = two_processes / "spos"
    for name in ("architecture.json", "log.jsonl"):
        assert (tmp_path / "out" / name).read_text() == (uninterrupted / name).read_text(), name
    got, expected = _tensors(_state(tmp_path / "out")["strategy"]), _tensors(_state(uninterrupted)["strategy"])
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
