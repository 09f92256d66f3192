"""`dfnas-synth` end to end: bad input, kill -9 then --resume, torchrun with 2 processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dfnas.cli.synth import main
from dfnas.files import sha256_file

# Subprocesses run outside the source tree: with it as cwd, `python -m` would import the source
# package (which has no compiled extension in a regular install) instead of the installed one.
NEUTRAL_CWD = tempfile.gettempdir()
# Tiny but real: the default teacher, few iterations.
SMALL = ["--num-images", "12", "--batch-size", "2", "--rounds", "2", "--iterations", "4", "--quiet"]


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dfnas.cli.synth", *args], capture_output=True, text=True,
                          env=env, cwd=NEUTRAL_CWD, timeout=300)


def read_dataset(root: Path) -> tuple[dict, torch.Tensor]:
    manifest = json.loads((root / "manifest.json").read_text())
    images = [load_file(str(root / s["file"]))["images"] for s in manifest["shards"]]
    return manifest, torch.cat(images)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "no-such-teacher"], "teacher"),
        (["--teacher", "no_such_module:factory", "--weights", __file__], "no_such_module"),
        (["--weights", "/nonexistent/weights.safetensors"], "weights"),
        (["--crop", "40", "--canvas", "32"], "crop (40) must not be larger than canvas (32)"),
        (["--num-images", "0"], "num_images must be >= 1"),
        (["--amp", "fast"], "invalid choice"),
        (["--config", "/nonexistent.toml"], "does not exist"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, capsys, default_teacher_spec, args, message):
    code = main([*SMALL, *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("dfnas-synth: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err


def test_corrupt_weights_file_is_a_clear_error(tmp_path, capsys, default_teacher_spec):
    weights = tmp_path / "garbage.safetensors"
    weights.write_bytes(b"not a weights file")
    assert main(["--weights", str(weights), "--out", str(tmp_path / "out"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfnas-synth: error:") and err.count("\n") == 1


def test_unwritable_out_dir_is_a_clear_error(tmp_path, capsys, default_teacher_spec):
    (tmp_path / "file").write_text("")
    assert main(["--out", str(tmp_path / "file" / "out"), *SMALL]) == 2
    assert "not writable" in capsys.readouterr().err


def test_toml_config_and_flags(tmp_path, default_teacher_spec):
    config = tmp_path / "synth.toml"
    config.write_text('num-images = 4\nbatch_size = 2\nrounds = 1\niterations = 2\ncanvas = 30\nseed = 7\n')
    assert main(["--config", str(config), "--iterations", "3", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 7 and manifest["config"]["iterations"] == 3 and manifest["canvas"] == [1, 30, 30]
    (tmp_path / "bad.toml").write_text("no_such_key = 1\n")
    assert main(["--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o2")]) == 2


def test_kill_9_then_resume_finishes_exactly_once(tmp_path, default_teacher_spec):
    out = tmp_path / "out"
    args = ["--num-images", "24", "--batch-size", "2", "--rounds", "2", "--iterations", "8", "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "dfnas.cli.synth", *args], env=env, cwd=NEUTRAL_CWD,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "shard-00001.safetensors").exists():
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and 0 < len(manifest["shards"]) < 6
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    manifest, images = read_dataset(out)
    assert manifest["complete"] and [s["index"] for s in manifest["shards"]] == list(range(6))
    assert images.shape[0] == 24
    assert len({bytes(image.numpy().tobytes()) for image in images}) == 24  # none duplicated
    for entry in manifest["shards"]:
        assert sha256_file(out / entry["file"]) == entry["sha256"]
    # Same bytes as an uninterrupted run.
    fresh = run_cli(*args[:-1], str(tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.stderr
    assert (out / "manifest.json").read_bytes() == (tmp_path / "fresh" / "manifest.json").read_bytes()


def test_torchrun_two_processes_equal_one_process(tmp_path, default_teacher_spec):
    single = run_cli(*SMALL, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "dfnas.cli.synth", *SMALL, "--out", str(tmp_path / "multi")],
        capture_output=True, text=True, env=env, cwd=NEUTRAL_CWD, timeout=300)
    assert torchrun.returncode == 0, torchrun.stderr[-2000:]
    for name in ["manifest.json"] + [f"shard-{i:05d}.safetensors" for i in range(3)]:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "multi" / name).read_bytes(), name
