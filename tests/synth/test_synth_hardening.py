"""`dfnas-synth` at its edges: user teachers from the working directory, crops a teacher cannot take,
TorchScript teachers, one writer per directory, and a manifest that says complete only when it is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dfnas.cli.synth import main
from dfnas.data.writer import DatasetWriter
from dfnas.files import exclusive_directory

SMALL = ["--num-images", "8", "--batch-size", "2", "--rounds", "2", "--iterations", "2", "--quiet"]
FIXED_HEAD_MODULE = """
from torch import nn

def build():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 28 * 28, 10))
"""


@pytest.fixture
def fixed_head_teacher(tmp_path) -> list[str]:
    """A user teacher in ./fixedhead.py (the test runs in tmp_path) whose linear head fixes the input at 28x28."""
    (tmp_path / "fixedhead.py").write_text(FIXED_HEAD_MODULE)
    namespace: dict = {}
    exec(FIXED_HEAD_MODULE, namespace)
    torch.manual_seed(0)
    save_file(namespace["build"]().state_dict(), str(tmp_path / "fixedhead.safetensors"))
    (tmp_path / "fixedhead.json").write_text(json.dumps(
        {"input_size": [28, 28], "in_channels": 1, "mean": [0.5], "std": [0.25]}))
    return ["--teacher", "fixedhead:build", "--weights", str(tmp_path / "fixedhead.safetensors")]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("dfnas-synth: error:") and "Traceback" not in err
    return err


def test_a_teacher_module_in_the_working_directory_is_found(tmp_path, capsys, fixed_head_teacher):
    assert main([*SMALL, *fixed_head_teacher, "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["complete"] is True


def test_a_crop_the_teacher_cannot_take_is_refused_before_writing(tmp_path, capsys, fixed_head_teacher):
    assert main([*SMALL, *fixed_head_teacher, "--crop", "20", "--canvas", "24", "--out", str(tmp_path / "out")]) == 2
    assert "cannot take a 20x20 crop" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_a_torchscript_teacher_is_refused_in_one_line(tmp_path, capsys):
    from dfnas.teachers import load_teacher

    scripted = torch.jit.script(load_teacher("default").model)
    scripted.save(str(tmp_path / "teacher.pt"))
    (tmp_path / "teacher.json").write_text(json.dumps(
        {"input_size": [28, 28], "in_channels": 1, "mean": [0.5], "std": [0.25]}))
    assert main([*SMALL, "--teacher", str(tmp_path / "teacher.pt"), "--out", str(tmp_path / "out")]) == 2
    assert "TorchScript" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_writer_is_refused(tmp_path, capsys, resume):
    with exclusive_directory(tmp_path / "out"):
        code = main([*SMALL, "--out", str(tmp_path / "out"), *(["--resume"] if resume else [])])
    assert code == 2 and "in use by another dfnas run" in _one_line(capsys.readouterr().err)


def test_complete_is_written_only_after_the_shards_are_verified(tmp_path, capsys, monkeypatch):
    def failing_finish(self):
        raise OSError("disk gone while verifying")

    monkeypatch.setattr(DatasetWriter, "finish", failing_finish)
    assert main([*SMALL, "--out", str(tmp_path / "out")]) == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["shards"]) == 2 and manifest["complete"] is False  # every shard written, yet not complete


def test_a_run_that_wrote_no_shard_does_not_block_the_rerun(tmp_path, capsys):
    out = tmp_path / "out"
    header = {"num_images": 8, "canvas": [1, 32, 32], "crop": [28, 28], "config": {}, "teacher": {}}
    DatasetWriter(out, header, [4, 4], resume=False)  # what a run killed before its first shard leaves
    assert (out / "manifest.json").exists()
    assert main([*SMALL, "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def test_malformed_shard_entries_on_resume_are_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*SMALL, "--out", str(out)]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["count"] = "four"
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main([*SMALL, "--out", str(out), "--resume"]) == 2
    assert "malformed shard entry" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("flag, value, message", [
    ("--eps", "nan", "eps must be a finite number"),
    ("--r-feature", "nan", "r_feature must be a finite number"),
    ("--l2", "inf", "l2 must be a finite number"),
    ("--num-images", "1000000000000000", "num_images must be <= "),
    ("--num-images", "1e15", "invalid int value"),
])
def test_non_finite_and_absurd_values_are_refused(tmp_path, capsys, flag, value, message):
    assert main([*SMALL, flag, value, "--out", str(tmp_path / "out")]) == 2
    assert message in _one_line(capsys.readouterr().err)
    assert not Path(tmp_path / "out").exists()
