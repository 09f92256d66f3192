"""`dfnas-search` killed with SIGKILL in the middle of a unit, then resumed with `--resume`, ends
with the architecture, log and final state of a run that was never interrupted (each strategy).

`--stop-after` (the other resume tests) stops cleanly between units; SIGKILL lands anywhere: in a
unit's steps, between the log line and the checkpoint, or while the checkpoint is written."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from dfnas.cli.search import main

from test_search_data import write_tiny_dataset

FAST = ["--channels-last", "off", "--amp", "off", "--threads", "1", "--quiet", "--batch-size", "8"]
# Three units each; one takes ~0.5-2 s here, so a kill right after the first checkpoint lands mid-run.
SETTINGS = {
    "darts": ["--epochs", "3", "--warmup-epochs", "1", "--steps-per-epoch", "1", "--calib-batches", "1"],
    "spos": ["--epochs", "1", "--steps-per-epoch", "15", "--calib-batches", "2", "--calib-batch-size", "8",
             "--val-batch-size", "8", "--evolution-population", "6", "--evolution-top-k", "2",
             "--evolution-generations", "2", "--evolution-mutations", "2", "--evolution-crossovers", "2"],
    "proxyless": ["--epochs", "3", "--warmup-epochs", "1", "--steps-per-epoch", "8", "--arch-every", "2",
                  "--rl-samples", "2", "--calib-batches", "1", "--calib-batch-size", "8"],
}


def _console() -> list[str]:
    script = shutil.which("dfnas-search")
    return [script] if script else [sys.executable, "-m", "dfnas.cli.search"]


def _assert_same_state(a, b, where: str = "state") -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("strategy", ["darts", "spos", "proxyless"])
def test_sigkill_mid_unit_then_resume_gives_the_uninterrupted_result(tmp_path, strategy):
    """Guards against: state missing from the checkpoint (an RNG, a stream, an optimizer), or
    a half-written unit (log line, temporary file) leaking into the resumed run."""
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    common = [strategy, "--data", str(root), *FAST, *SETTINGS[strategy]]
    killed = tmp_path / "killed"
    process = subprocess.Popen(_console() + common + ["--out", str(killed)], cwd=tmp_path,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (killed / "checkpoint.pt").exists() and process.poll() is None:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not (killed / "architecture.json").exists()
    saved = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert 1 <= saved["next_unit"] < 3  # killed after the first unit's checkpoint, before the end

    assert main(common + ["--out", str(killed), "--resume"]) == 0
    whole = tmp_path / "whole"
    assert main(common + ["--out", str(whole)]) == 0

    assert (json.loads((killed / "architecture.json").read_text())
            == json.loads((whole / "architecture.json").read_text()))
    assert (killed / "log.jsonl").read_text() == (whole / "log.jsonl").read_text()
    assert len((whole / "log.jsonl").read_text().splitlines()) == 3
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (killed, whole))
    _assert_same_state(a, b)
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]


def test_resume_after_a_kill_between_the_log_line_and_the_checkpoint(tmp_path):
    """Guards against: resume keeping the log records of a unit whose checkpoint was never written,
    or leaving the temporary file of a checkpoint killed mid-write (the windows a SIGKILL hits
    only by chance, made deterministic)."""
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    common = ["spos", "--data", str(root), *FAST, *SETTINGS["spos"]]
    torn = tmp_path / "torn"
    assert main(common + ["--out", str(torn), "--stop-after", "1"]) == 0
    with open(torn / "log.jsonl", "a") as log:  # unit 2 logged, then killed: once after, once mid-line
        log.write(json.dumps({"unit": 2, "phase": "supernet", "train_loss": 9.0}) + "\n" + '{"unit": 3, "pha')
    (torn / ".checkpoint.pt.x8k2q1.tmp").write_bytes(os.urandom(64))  # a checkpoint cut off mid-write
    assert main(common + ["--out", str(torn), "--resume"]) == 0
    whole = tmp_path / "whole"
    assert main(common + ["--out", str(whole)]) == 0
    assert (torn / "log.jsonl").read_text() == (whole / "log.jsonl").read_text()
    assert (torn / "architecture.json").read_text() == (whole / "architecture.json").read_text()
    assert sorted(p.name for p in torn.iterdir()) == sorted(p.name for p in whole.iterdir())


def test_resume_after_a_kill_past_the_last_checkpoint_writes_the_architecture(tmp_path):
    """Guards against: a run killed after its last unit's checkpoint (while writing
    architecture.json or the plots) that `--resume` cannot finish, or finishes differently."""
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    common = ["spos", "--data", str(root), *FAST, *SETTINGS["spos"]]
    out = tmp_path / "run"
    assert main(common + ["--out", str(out)]) == 0
    architecture = (out / "architecture.json").read_text()
    log = (out / "log.jsonl").read_text()
    (out / "architecture.json").unlink()  # the state a kill right after the last checkpoint leaves
    (out / "evolution.png").unlink()
    assert main(common + ["--out", str(out), "--resume"]) == 0
    assert (out / "architecture.json").read_text() == architecture
    assert (out / "log.jsonl").read_text() == log and (out / "evolution.png").stat().st_size > 0
