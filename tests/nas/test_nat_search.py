"""`dfnas-search nat` end to end on a tiny dataset: the files, a front that is non-dominated and
within the constraint, resume after a clean stop and after SIGKILL, and one-line input errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from dfnas.cli.search import main
from dfnas.nas.arch import Architecture
from dfnas.nas.profile import build_latency_table, cost_table
from dfnas.nas.spaces.spos import SposConfig

from test_nat_front import brute_force_front
from test_search_data import write_tiny_dataset

SMALL = ["--epochs", "2", "--steps-per-epoch", "5", "--batch-size", "8", "--calib-batches", "2",
         "--calib-batch-size", "8", "--val-batch-size", "8", "--initial-samples", "6", "--iterations", "2",
         "--picks", "3", "--nsga-population", "8", "--nsga-generations", "3", "--cv-folds", "3",
         "--channels-last", "off", "--amp", "off", "--threads", "1", "--quiet"]
FAST_PREDICTORS = ["--predictors", "rbf,trees"]
UNITS = 2 + 1 + 2  # warm-start epochs, initial archive, iterations


def _dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "ds", count=60, num_classes=4)


def _mmacs_range() -> tuple[float, float]:
    table = cost_table("spos", SposConfig.tiny(1, 8, 4))
    low = table.fixed_total + sum(min(slot.values()) for slot in table.slots)
    high = table.fixed_total + sum(max(slot.values()) for slot in table.slots)
    return low / 1e6, high / 1e6


def _outputs(out: Path) -> dict[str, str]:
    """Every result file's text (the checkpoint and timing-bearing config aside)."""
    names = ["architecture.json", "archive.json", "archive.csv", "hypervolume.json", "log.jsonl"]
    names += [f"front/{p.name}" for p in sorted((out / "front").glob("*.json"))]
    return {name: (out / name).read_text() for name in names}


def test_end_to_end_front_is_non_dominated_and_within_the_constraint(tmp_path, capsys):
    low, high = _mmacs_range()
    limit = low + 0.6 * (high - low)
    out = tmp_path / "run"
    argv = ["nat", "--data", str(_dataset(tmp_path)), "--out", str(out), "--max-macs", str(limit), *SMALL]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("dfnas-search: nat winner ->") and "front of" in last and "hypervolume" in last

    for name in ("architecture.json", "archive.json", "archive.csv", "front.png", "hypervolume.png",
                 "hypervolume.json", "log.jsonl", "config.json"):
        assert (out / name).stat().st_size > 0, name
    archive = json.loads((out / "archive.json").read_text())["members"]
    assert len(archive) == 6 + 2 * 3
    assert len({tuple(m["path"]) for m in archive}) == len(archive)
    assert all(m["costs"]["macs"] <= limit for m in archive)
    assert len((out / "archive.csv").read_text().splitlines()) == len(archive) + 1

    objectives = np.array([[1 - m["agreement"], m["costs"]["macs"]] for m in archive])
    expected = brute_force_front(objectives)
    assert sorted(NonDominatedSorting().do(objectives, only_non_dominated_front=True).tolist()) == expected
    on_front = [i for i, m in enumerate(archive) if m["front_file"]]
    assert on_front == expected
    front = [Architecture.load(out / archive[i]["front_file"]) for i in on_front]
    assert sorted(p.name for p in (out / "front").iterdir()) == sorted(Path(archive[i]["front_file"]).name
                                                                       for i in on_front)
    for arch, i in zip(front, on_front):
        assert list(arch.choices) == archive[i]["path"] and arch.derived["flops"] <= limit * 1e6

    chosen = Architecture.load(out / "architecture.json")  # what dfnas-train reads
    best = max(on_front, key=lambda i: (archive[i]["agreement"], -archive[i]["costs"]["macs"]))
    assert list(chosen.choices) == archive[best]["path"]
    chosen.build().eval()(torch.zeros(1, 1, 8, 8))

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["supernet"] * 2 + ["initial archive"] + ["nat"] * 2
    assert records[2]["hv_reference"]["reference_point"] == [1.01, 1.01]
    assert records[2]["hv_reference"]["cost_bounds"] == [[pytest.approx(low), limit]]
    for record in records[3:]:
        assert record["predictor"] in record["predictor_taus"]
        assert record["predictor_tau"] == max(record["predictor_taus"].values())
        assert len(record["picks"]) == 3 and 0.0 <= record["hypervolume"] <= 1.01 ** 2
    history = json.loads((out / "hypervolume.json").read_text())["history"]
    assert [h["iteration"] for h in history] == [0, 1, 2]


def test_many_objectives_with_a_latency_table(tmp_path):
    table = build_latency_table("spos", SposConfig.tiny(1, 8, 4), repeats=2, warmup=1)
    table.save(tmp_path / "latency.json")
    out = tmp_path / "run"
    argv = ["nat", "--data", str(_dataset(tmp_path)), "--out", str(out), "--objectives", "macs,params,latency",
            "--latency-table", str(tmp_path / "latency.json"), "--iterations", "1", *SMALL, *FAST_PREDICTORS]
    assert main(argv) == 0
    archive = json.loads((out / "archive.json").read_text())["members"]
    objectives = np.array([[1 - m["agreement"], m["costs"]["macs"], m["costs"]["params"], m["costs"]["latency"]]
                           for m in archive])
    on_front = [i for i, m in enumerate(archive) if m["front_file"]]
    assert on_front == brute_force_front(objectives)
    # front/NN.json are numbered by increasing MACs (the first objective).
    by_file = sorted(on_front, key=lambda i: archive[i]["front_file"])
    assert [objectives[i, 1] for i in by_file] == sorted(objectives[on_front, 1])
    chosen = json.loads((out / "architecture.json").read_text())
    assert chosen["derived"]["latency_ms"] == pytest.approx(table.cost(chosen["choices"]))
    assert len(json.loads((out / "hypervolume.json").read_text())["cost_bounds"]) == 3


def test_resume_after_a_clean_stop_gives_the_same_front(tmp_path):
    common = ["nat", "--data", str(_dataset(tmp_path)), *SMALL, *FAST_PREDICTORS]
    assert main(common + ["--out", str(tmp_path / "full")]) == 0
    split = ["--out", str(tmp_path / "split")]
    assert main(common + split + ["--stop-after", str(UNITS - 1)]) == 0  # after the first iteration
    assert not (tmp_path / "split" / "architecture.json").exists()
    assert main(common + split + ["--resume"]) == 0
    assert _outputs(tmp_path / "split") == _outputs(tmp_path / "full")


def _console(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "dfnas.cli.search", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_front(tmp_path):
    common = ["nat", "--data", str(_dataset(tmp_path)), *SMALL, *FAST_PREDICTORS]
    full = _console(common + ["--out", "full"], tmp_path)
    assert full.wait(timeout=300) == 0, full.stderr.read()
    victim = _console(common + ["--out", "killed"], tmp_path)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.monotonic() + 300
    # Kill once the initial archive is logged: mid-iteration (or mid-checkpoint) the process dies.
    while time.monotonic() < deadline and victim.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert not (tmp_path / "killed" / "architecture.json").exists()
    resumed = _console(common + ["--out", "killed", "--resume"], tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _outputs(tmp_path / "killed") == _outputs(tmp_path / "full")


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dfnas-search: error:")
    return err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = str(_dataset(tmp_path))
    out = tmp_path / "run"
    common = ["nat", "--data", data, "--out", str(out), *SMALL]
    assert "objectives must be" in _error(capsys, common + ["--objectives", "macs,energy"])
    assert not out.exists()
    low, _ = _mmacs_range()
    err = _error(capsys, common + ["--max-macs", str(low / 2)])
    assert "max_macs" in err and "impossible" in err and "MMACs" in err
    assert not out.exists()
    assert "predictors must be" in _error(capsys, common + ["--predictors", "rbf,svm"])
    assert "picks (9) must not exceed" in _error(capsys, common + ["--picks", "9"])
    assert not out.exists()
