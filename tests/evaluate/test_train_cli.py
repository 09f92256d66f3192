"""`dfnas-train` input handling: one line and exit code 2 for bad input, with nothing left in --out;
exit code 1 naming the epoch and step for a non-finite loss; layered settings and help."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dfnas.cli.train import main

from train_helpers import TEACHER_SPEC, save_architecture, write_dataset, write_teacher

FAST = ["--steps", "4", "--batch-size", "16", "--export", "none", "--latency-runs", "1", "--quiet"]


@pytest.fixture
def toy(tmp_path):
    return {"data": str(write_dataset(tmp_path / "data")),
            "arch": str(save_architecture(tmp_path / "arch.json", "spos")),
            "out": tmp_path / "out"}


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dfnas-train: error:"), err
    return err


def bad_arch(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CASES = {
    "missing architecture": (lambda t, p: [str(p / "nope.json"), "--data", t["data"]], "does not exist"),
    "architecture not JSON": (lambda t, p: [bad_arch(p, "a.json", "{nope"), "--data", t["data"]], "not valid JSON"),
    "unknown space": (lambda t, p: [bad_arch(p, "b.json", json.dumps(
        {**json.loads(open(t["arch"]).read()), "space": "resnet"})), "--data", t["data"]], "unknown search space"),
    "missing dataset": (lambda t, p: [t["arch"], "--data", str(p / "nothing")], "does not exist"),
    "no data": (lambda t, p: [t["arch"]], "--data is required"),
    "arch classes": (lambda t, p: [str(save_architecture(p / "a10.json", "spos", classes=10)), "--data", t["data"]],
                     "has 4 classes but the architecture is built for 10"),
    "arch input size": (lambda t, p: [str(save_architecture(p / "a28.json", "spos", size=28)), "--data", t["data"]],
                        "1x8x8 images but the architecture takes 1x28x28"),
    "teacher classes": (lambda t, p: [t["arch"], "--data", t["data"], "--teacher", "default"],
                        "has 10 classes, the architecture 4 and the data 4"),
    "unknown teacher": (lambda t, p: [t["arch"], "--data", t["data"], "--teacher", "no_such_module:f",
                                      "--weights", t["arch"]], "--teacher"),
    "weights alone": (lambda t, p: [t["arch"], "--data", t["data"], "--weights", t["arch"]], "without --teacher"),
    "nan lr": (lambda t, p: [t["arch"], "--data", t["data"], "--lr", "nan"], "lr must be a finite number"),
    "inf temperature": (lambda t, p: [t["arch"], "--data", t["data"], "--temperature", "inf"], "finite"),
    "negative lr": (lambda t, p: [t["arch"], "--data", t["data"], "--lr", "-1"], "lr must be > 0"),
    "zero steps": (lambda t, p: [t["arch"], "--data", t["data"], "--steps", "0"], "steps must be >= 1"),
    "val fraction": (lambda t, p: [t["arch"], "--data", t["data"], "--val-fraction", "1.5"], "val_fraction must be <="),
    "batch too large": (lambda t, p: [t["arch"], "--data", t["data"], "--batch-size", "4096"], "larger than the"),
    "bad export": (lambda t, p: [t["arch"], "--data", t["data"], "--export", "tflite"], "export must list"),
    "bad optimizer": (lambda t, p: [t["arch"], "--data", t["data"], "--optimizer", "lamb"], "invalid choice"),
    "resume nothing": (lambda t, p: [t["arch"], "--data", t["data"], "--resume"], "holds no checkpoint.pt"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, toy, tmp_path, capsys):
    make_args, message = CASES[case]
    args = make_args(toy, tmp_path)
    argv = [*args[:1], *FAST, *args[1:], "--out", str(toy["out"])]
    if "--steps" in args:  # the case's own value wins (flags given twice: the last one)
        argv = [*args, "--out", str(toy["out"]), "--quiet"]
    assert message in one_line_error(capsys, argv)
    assert not toy["out"].exists()


def test_out_that_is_a_file(toy, capsys):
    toy["out"].write_text("precious")
    assert "is not a directory" in one_line_error(capsys, [toy["arch"], "--data", toy["data"], "--out",
                                                           str(toy["out"]), *FAST])
    assert toy["out"].read_text() == "precious"


def test_unknown_config_key(toy, tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("stepz = 3\n")
    assert "unknown setting 'stepz'" in one_line_error(
        capsys, [toy["arch"], "--data", toy["data"], "--config", str(tmp_path / "bad.toml"), "--out", str(toy["out"])])
    assert not toy["out"].exists()


def test_non_finite_loss_stops_with_exit_1_naming_epoch_and_step(tmp_path, toy, capsys):
    weights = write_teacher(tmp_path / "teacher")  # a teacher whose logits overflow: KL targets are NaN
    state = load_file(weights)
    state["classifier.bias"] = torch.full_like(state["classifier.bias"], float("inf"))
    save_file(state, weights)
    err = one_line_error(capsys, [toy["arch"], "--data", toy["data"], "--teacher", TEACHER_SPEC, "--weights",
                                  str(weights), "--out", str(toy["out"]), *FAST], code=1)
    assert "non-finite training loss" in err and "epoch 1, step 1" in err
    assert not toy["out"].exists()  # nothing finished: nothing left behind


def test_config_file_then_flags_and_summary_line(toy, tmp_path, capsys):
    (tmp_path / "run.toml").write_text(f'data = "{toy["data"]}"\nsteps = 3\nlr = 0.05\nexport = "none"\n')
    assert main([toy["arch"], "--config", str(tmp_path / "run.toml"), "--steps", "5", "--batch-size", "16",
                 "--latency-runs", "1", "--out", str(toy["out"]), "--quiet"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("dfnas-train: synthetic val agreement") and out.endswith("model.safetensors")
    result = json.loads((toy["out"] / "result.json").read_text())
    assert (result["config"]["steps"], result["config"]["lr"], result["training"]["steps"]) == (5, 0.05, 5)
    assert result["export"] == {} and result["teacher"]["from"] == "dataset manifest"


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse may wrap inside "(default: X)"
    assert "--steps STEPS" in text and "(default: 600)" in text and "(default: sgd)" in text
