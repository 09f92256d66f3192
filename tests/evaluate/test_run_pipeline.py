"""`dfnas-run` end to end at toy size: every stage, the report, resume from disk, bad input."""
from __future__ import annotations

import json

import pytest

from dfnas.cli.run import main
from dfnas.evaluate.pipeline import GOOD_FRACTION, USABLE_FRACTION

TOY = """
num_images = 200
iterations = 4
train_steps = 12
[search]
epochs = 1
threads = "1"
channels_last = "off"
amp = "off"
[search.evolution]
generations = 1
population = 4
mutations = 2
crossovers = 2
top_k = 2
[train]
batch_size = 16
threads = 1
export = "torchscript"
latency_runs = 1
"""


@pytest.fixture
def toy_config(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY)
    return path


def test_run_end_to_end_then_rerun_reuses_every_stage(tmp_path, toy_config, capsys):
    """Guards against (among others): a verdict that does not follow the student's fraction of the teacher."""
    out = tmp_path / "job"
    assert main(["--config", str(toy_config), "--out", str(out), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "[1/3]" in first and "[2/3]" in first and "[3/3]" in first
    summary = json.loads((out / "summary.json").read_text())
    student = summary["student"]
    assert 0.9 < student["teacher_accuracy"] <= 1.0  # the bundled teacher, scored on the real digits
    assert student["fraction_of_teacher"] == pytest.approx(student["test_accuracy"] / student["teacher_accuracy"])
    # The verdict follows the student's fraction of the teacher (formerly: any of the three passed).
    fraction = student["fraction_of_teacher"]
    expected = ("worked" if fraction >= GOOD_FRACTION else
                "partly worked" if fraction >= USABLE_FRACTION else "did not work well")
    assert summary["verdict"].split(":")[0] == expected
    assert f"{student['test_accuracy']:.1%}" in summary["verdict"] and f"{fraction:.0%}" in summary["verdict"]
    report = (out / "report.md").read_text()
    assert summary["verdict"] in report and "search/architecture.json" in report
    assert json.loads((out / "train" / "architecture.json").read_text()) == json.loads(
        (out / "search" / "architecture.json").read_text())  # the winner is what was trained
    assert first.strip().splitlines()[-1].startswith("dfnas-run: " + summary["verdict"])

    weights = (out / "train" / "model.safetensors").read_bytes()
    assert main(["--config", str(toy_config), "--out", str(out), "--quiet"]) == 0
    second = capsys.readouterr().out
    assert "search: reusing" in second and "distillation: reusing" in second
    assert (out / "train" / "model.safetensors").read_bytes() == weights

    assert main(["--config", str(toy_config), "--out", str(out), "--num-images", "300", "--quiet"]) == 2
    assert "num_images: 200 on disk vs 300 requested" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--strategy", "nope"], "invalid choice"),
    (["--iterations", "0"], "iterations must be >= 1"),
    (["--teacher", "no_such_module:factory", "--weights", __file__], "no_such_module"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, toy_config, capsys, extra, message):
    out = tmp_path / "job"
    assert main(["--config", str(toy_config), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dfnas-run: error:") and message in err
    assert not out.exists()


def test_unknown_stage_table_is_refused(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[serach]\nepochs = 1\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "job")]) == 2
    assert "unknown setting 'serach'" in capsys.readouterr().err
    assert not (tmp_path / "job").exists()


def test_report_lists_a_nat_front_and_nothing_for_single_winner_strategies(tmp_path):
    """front: `dfnas-run --strategy nat` names every front member a user can pick and train."""
    from dfnas.evaluate.pipeline import _front_lines

    search = tmp_path / "search"
    assert _front_lines(search) == []
    (search / "front").mkdir(parents=True)
    for name, flops, params in (("01.json", 900_000, 52_300), ("00.json", 501_248, 48_280)):
        (search / "front" / name).write_text(json.dumps({"derived": {"flops": flops, "params": params}}))
    (line,) = _front_lines(search)
    assert line.startswith("- Pareto front: 2 architectures in `search/front/`")
    assert line.index("`00.json` 0.501 MMACs / 48.3k") < line.index("`01.json` 0.9 MMACs / 52.3k")
