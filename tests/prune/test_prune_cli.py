"""`dfnas-prune` end to end at toy size: a residual user teacher and the bundled one, each with a
synthetic set made by dfnas-synth; the budget holds, the output loads as a teacher, a killed run
resumes to the same result, and bad input is one line, exit 2, nothing written."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dfnas.cli.prune import main as prune_main
from dfnas.cli.synth import main as synth_main
from dfnas.nas.profile import count_macs
from dfnas.teachers import load_teacher

HERE = Path(__file__).resolve().parent
TOY = ["--pruning-net-steps", "20", "--population", "4", "--parents", "2", "--generations", "2", "--calib-batches", "1", "--calib-batch-size",
       "16", "--steps", "6", "--batch-size", "16", "--val-fraction", "0.25", "--threads", "1", "--quiet"]


def _user_teacher(root: Path, factory: str = "ResNetLike") -> list[str]:
    """prune_teachers.py copied into `root` (the working directory), random weights + sidecar."""
    shutil.copy(HERE / "prune_teachers.py", root / "prune_teachers.py")
    import prune_teachers

    torch.manual_seed(0)
    model = getattr(prune_teachers, factory)()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, root / "teacher.safetensors")
    (root / "teacher.json").write_text(json.dumps({"input_size": [8, 8], "in_channels": 1, "mean": [0.5],
                                                   "std": [0.25]}))
    return ["--teacher", f"prune_teachers:{factory}", "--weights", str(root / "teacher.safetensors")]


def _synthesize(out: Path, teacher: list[str], count: int) -> Path:
    """Noise images labelled by the teacher (0 iterations): enough to exercise every stage."""
    assert synth_main(teacher + ["--num-images", str(count), "--batch-size", str(count), "--iterations", "0",
                                 "--out", str(out), "--quiet"]) == 0
    return out


def _console() -> list[str]:
    script = shutil.which("dfnas-prune")
    return [script] if script else [sys.executable, "-m", "dfnas.cli.prune"]


def test_residual_user_teacher_is_pruned_within_budget_and_loads_back(tmp_path, capsys):
    teacher = _user_teacher(tmp_path)
    data = _synthesize(tmp_path / "data", teacher, 64)
    assert prune_main(teacher + ["--data", str(data), "--ratio", "0.5", "--out", "out"] + TOY) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(Path("out/result.json").read_text())
    teacher_macs = result["teacher"]["macs"]
    searched = result["networks"]["searched"]
    assert 0.45 * teacher_macs <= searched["macs"] <= 0.5 * teacher_macs
    assert result["networks"]["uniform"]["macs"] <= 0.5 * teacher_macs
    assert result["test_note"].startswith("no real test set") and searched["test_accuracy"] is None
    best = result["search"]["best"]  # the chosen candidate, rescored: scoring is deterministic
    assert searched["before_distillation"] == {"agreement": best["agreement"], "kl": best["kl"]}
    assert searched["ratios"] == best["ratios"]
    assert line.startswith("dfnas-prune: pruned to") and "synthetic val agreement" in line

    loaded = load_teacher("dfnas.prune.pruned:build", weights="out/pruned.safetensors")
    assert count_macs(loaded.model, (1, 8, 8)) == searched["macs"]
    assert loaded.model.layer1[0].conv2.out_channels == loaded.model.conv1.out_channels  # residual coupling
    ratios = json.loads(Path("out/ratios.json").read_text())
    assert [g["layer"] for g in ratios["groups"]][0] == "conv1"
    assert ratios["searched"]["channels"] == searched["channels"]
    candidates = json.loads(Path("out/candidates.json").read_text())
    assert len(candidates) == result["search"]["candidates_scored"] >= 4
    assert Path("out/accuracy_vs_macs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bundled_teacher_reports_real_accuracy_and_a_verdict(tmp_path, capsys):
    data = _synthesize(tmp_path / "data", [], 48)
    assert prune_main(["--data", str(data), "--ratio", "0.5", "--out", "out"] + TOY) == 0
    result = json.loads(Path("out/result.json").read_text())
    assert result["teacher"]["test_accuracy"] > 0.95  # the bundled teacher on the real held-out digits
    searched = result["networks"]["searched"]
    assert searched["test_accuracy"] is not None and result["test_set"].startswith("dfnas.data.mnist")
    assert "below the teacher" in result["verdict"] or "within" in result["verdict"]
    loaded = load_teacher("dfnas.prune.pruned:build", weights="out/pruned.safetensors")
    assert count_macs(loaded.model, (1, 28, 28)) == searched["macs"] <= 0.5 * result["teacher"]["macs"]


def _kill_when(argv: list[str], cwd: Path, appears: Path) -> None:
    """Start dfnas-prune, SIGKILL it as soon as `appears` exists (a checkpoint mid-run)."""
    process = subprocess.Popen(_console() + argv, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not appears.exists() and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert not (appears.parent / "result.json").exists()


def test_sigkill_then_resume_gives_the_same_result(tmp_path):
    """Killed mid PruningNet training, then mid search; resumed twice; same as one whole run."""
    teacher = _user_teacher(tmp_path)
    data = _synthesize(tmp_path / "data", teacher, 64)
    common = teacher + ["--data", str(data), "--ratio", "0.5"] + TOY + ["--generations", "5", "--steps", "30",
                                                                        "--pruning-net-steps", "150"]
    killed = tmp_path / "killed"
    _kill_when(common + ["--out", str(killed)], tmp_path, killed / "pruning_net.pt")  # saved at step 100 of 150
    assert torch.load(killed / "pruning_net.pt", weights_only=True)["step"] == 100
    assert prune_main(common + ["--out", str(killed)]) == 2  # an interrupted run is never overwritten
    assert prune_main(common + ["--out", str(killed), "--resume", "--pruning-net-lr", "0.01"]) == 2  # other settings
    _kill_when(common + ["--out", str(killed), "--resume"], tmp_path, killed / "search.pt")
    assert prune_main(common + ["--out", str(killed), "--resume"]) == 0
    assert prune_main(common + ["--out", str(tmp_path / "whole")]) == 0
    a, b = (json.loads((d / "candidates.json").read_text()) for d in (killed, tmp_path / "whole"))
    assert a == b
    wa, wb = load_file(killed / "pruned.safetensors"), load_file(tmp_path / "whole" / "pruned.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _refused(capsys, argv: list[str], match: str) -> None:
    capsys.readouterr()  # what dfnas-synth said
    assert prune_main(argv + ["--out", "out", "--quiet", "--val-fraction", "0.25"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not Path("out").exists()


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    teacher = _user_teacher(tmp_path)
    data = ["--data", str(_synthesize(tmp_path / "data", teacher, 64))]
    _refused(capsys, teacher + data + ["--ratio", "1.5"], "ratio")
    _refused(capsys, teacher + data + ["--ratio", "0.5", "--target-macs", "1000"], "exactly one budget")
    _refused(capsys, teacher + data, "exactly one budget")
    _refused(capsys, teacher + data + ["--target-macs", "1e9"], "not below the teacher")
    _refused(capsys, teacher + data + ["--target-macs", "10"], "unreachable")
    _refused(capsys, data + ["--ratio", "0.5"], "synthesized from teacher")  # the bundled teacher, not this one
    _refused(capsys, teacher + ["--data", "nonexistent", "--ratio", "0.5"], "does not exist")
    _refused(capsys, ["--teacher", "model.pt", "--data", "x", "--ratio", "0.5"], "cannot be rebuilt")

    flat = _user_teacher(tmp_path, "nothing_to_prune")
    flat_data = ["--data", str(_synthesize(tmp_path / "flat", flat, 64))]
    _refused(capsys, flat + flat_data + ["--ratio", "0.5"], "no prunable layers")
