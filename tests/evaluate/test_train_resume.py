"""A run killed with SIGKILL mid-training and resumed ends with the weights of one never stopped."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file

from dfnas.cli.train import main

from train_helpers import save_architecture, write_dataset

NEUTRAL_CWD = tempfile.gettempdir()  # outside the source tree: subprocesses import the installed package


def _console() -> list[str]:
    script = shutil.which("dfnas-train")
    return [script] if script else [sys.executable, "-m", "dfnas.cli.train"]


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    data = write_dataset(tmp_path / "data", count=240)  # 216 train images: 27 steps of 8 per epoch
    arch = save_architecture(tmp_path / "arch.json", "spos")
    common = [str(arch), "--data", str(data), "--steps", "216", "--batch-size", "8", "--threads", "1",
              "--export", "none", "--latency-runs", "1", "--quiet"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_console() + common + ["--out", str(killed)], cwd=NEUTRAL_CWD, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (killed / "checkpoint.pt").exists() and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not (killed / "result.json").exists() and not (killed / "model.safetensors").exists()
    step = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 216  # killed mid-run, after at least one epoch's checkpoint

    assert main(common + ["--out", str(killed)]) == 2  # an interrupted run is never overwritten
    resumed = subprocess.run(_console() + common + ["--out", str(killed), "--resume"], cwd=NEUTRAL_CWD, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("dfnas-train: synthetic val agreement")

    whole = tmp_path / "whole"
    assert main(common + ["--out", str(whole)]) == 0
    a, b = load_file(killed / "model.safetensors"), load_file(whole / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (killed, whole))
    assert ra["training"]["history"][-1]["train_loss"] == rb["training"]["history"][-1]["train_loss"]
    assert ra["weights_sha256"] == rb["weights_sha256"]
    assert [r["step"] for r in ra["training"]["history"]] == [27 * k for k in range(1, 9)]


def test_resume_refuses_other_settings_and_refinishes_a_finished_run(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    arch = save_architecture(tmp_path / "arch.json", "spos")
    out = tmp_path / "out"
    common = [str(arch), "--data", str(data), "--out", str(out), "--steps", "8", "--batch-size", "16",
              "--export", "torchscript", "--latency-runs", "1", "--quiet"]
    assert main(common) == 0
    first = json.loads((out / "result.json").read_text())
    capsys.readouterr()
    assert main(common + ["--resume", "--lr", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "different settings (config.lr)" in err and len(err.strip().splitlines()) == 1
    # A finished run: --resume trains nothing more and writes the same weights again (export may change).
    assert main(common[:-5] + ["--export", "onnx", "--latency-runs", "1", "--quiet", "--resume"]) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["weights_sha256"] == first["weights_sha256"] and "onnx" in again["export"]
