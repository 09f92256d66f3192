"""`dfnas-consistency` end to end on a toy study: files, resume, added sources, bad input."""
from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest

from dfnas.cli.consistency import main
from dfnas.config import UsageError
from dfnas.evaluate import consistency
from dfnas.evaluate.consistency import StudyConfig, plan_study, sample_architectures

# A toy but real study: 3 tiny SPOS networks, a few steps each, 100 images of unoptimized noise.
TOY = ["--space", "spos", "--num-archs", "3", "--candidates", "60", "--steps", "12", "--batch-size", "16",
       "--num-images", "100", "--resamples", "50", "--quiet"]
TRAIN_TABLE = "[train]\nwarmup_steps = 0\nlr = 0.05\n"


@pytest.fixture
def toy_config(tmp_path) -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(TRAIN_TABLE)
    return path


def count_trainings(monkeypatch) -> list[str]:
    ran: list[str] = []
    real_run_job = consistency.run_job

    def counting(job):
        ran.append(f"{job.source}/{job.arch_id}")
        return real_run_job(job)

    monkeypatch.setattr(consistency, "run_job", counting)
    return ran


def test_toy_study_end_to_end_then_resume(tmp_path, toy_config, monkeypatch, capsys):
    out = tmp_path / "study"
    args = [*TOY, "--sources", "real,noise", "--config", str(toy_config), "--out", str(out)]
    assert main([*args, "--workers", "2"]) == 0  # the worker-process path
    assert "rank agreement with real: noise rho" in capsys.readouterr().out

    with open(out / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["arch_id"] for r in rows] == ["a00", "a01", "a02"]
    macs = [int(r["macs"]) for r in rows]
    assert macs == sorted(macs) and macs[0] < macs[-1]  # spread over the space's MACs
    for row in rows:
        for source in ("real", "noise"):
            result = json.loads((out / "runs" / source / row["arch_id"] / "result.json").read_text())
            assert float(row[f"acc_{source}"]) == pytest.approx(result["test_accuracy"], abs=1e-4)
            assert result["training"]["steps"] == 12 and result["config"]["batch_size"] == 16
            assert result["data"]["kind"] == ("mnist" if source == "real" else "synthetic")
    table = json.loads((out / "table.json").read_text())
    assert table["sources"] == ["real", "noise"] and len(table["archs"]) == 3
    manifest = json.loads((out / "data" / "noise" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["iterations"] == 0 and manifest["canvas"] == [1, 28, 28]
    stats = json.loads((out / "agreement.json").read_text())
    noise = stats["sources"]["noise"]
    assert set(noise) >= {"all", "top_half", "mean_accuracy"} and noise["all"]["n"] == 3
    assert noise["top_half"]["n"] == 2 and len(stats["top_half"]) == 2
    report = (out / "report.md").read_text()
    assert "| `noise` |" in report and "real-reseed" in report
    assert (out / "plots" / "noise.png").stat().st_size > 0 and (out / "plots" / "agreement.png").exists()

    # Rerun: nothing is trained again, finished results are untouched.
    ran = count_trainings(monkeypatch)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/result.json")}
    assert main(args) == 0
    assert ran == [] and {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # An interrupted training (checkpoint, no result) resumes; nothing else runs.
    (out / "runs" / "noise" / "a01" / "result.json").unlink()
    assert (out / "runs" / "noise" / "a01" / "checkpoint.pt").exists()
    assert main(args) == 0
    assert ran == ["noise/a01"] and (out / "runs" / "noise" / "a01" / "result.json").exists()


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dfnas-consistency: error: "), err
    return err


@pytest.mark.parametrize("extra, toml, message", [
    (["--sources", "real,bogus"], "", "unknown source 'bogus'"),
    (["--space", "nope"], "", "invalid choice: 'nope'"),
    (["--num-archs", "2"], "", "at least 3 for a rank correlation"),
    (["--sources", "real,mine"], '[source.mine]\nbase = "reg"\ndata = "no-such-dataset"\n', "does not exist"),
    (["--sources", "real,real-reseed"], "[source.real-reseed]\niterations = 5\n", "trains on the real digits"),
    (["--sources", "real,rlc-T2"], '[source.rlc-T2]\nbase = "rlc"\ncalibration_temprature = 2\n',
     "unknown setting 'calibration_temprature'"),
    (["--sources", "real"], "[train]\nsteps = 5\n", "decided by the study"),
    (["--sources", "real,reg"], "[source.reg]\ncanvas = 32\n", "regional = false means canvas = crop"),
    (["--sources", "real,reg"], "[sources.reg]\ncanvas = 28\n", "name source tables [source.<name>] (singular)"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, extra, toml, message):
    out = tmp_path / "out"
    args = [*TOY, *extra, "--out", str(out)]
    if toml:
        (tmp_path / "c.toml").write_text(toml)
        args += ["--config", str(tmp_path / "c.toml")]
    assert main(args) == 2
    assert message in _error(capsys)
    assert not out.exists()


def test_the_sweep_recipe_of_the_docs_is_a_valid_config(tmp_path):
    """Guards the recipe itself: a top-level `sources` list beside `[sources.<name>]` tables is not TOML."""
    docs = (Path(__file__).parents[2] / "docs" / "consistency.md").read_text()
    recipe = docs.split("# sweep.toml\n", 1)[1].split("```", 1)[0]
    values = tomllib.loads(recipe)
    tables = {name: values.pop(name) for name in ("train", "source") if name in values}
    plan = plan_study(StudyConfig(**values, candidates=60), tables, tmp_path / "study")
    assert [s.name for s in plan.sources] == values["sources"].split(",")
    assert plan.source("rlc-T4").synth.calibration_temperature == 4.0 and plan.source("rlc-K8").synth.rounds == 8


def test_a_different_study_in_the_same_directory_is_refused(tmp_path):
    config = StudyConfig(space="spos", num_archs=3, candidates=60, sources="real", steps=12)
    plan = plan_study(config, {}, tmp_path / "study")
    consistency._write_study(plan)
    plan_study(config, {}, tmp_path / "study")  # the same study: fine
    more = plan_study(StudyConfig(space="spos", num_archs=3, candidates=60, sources="real,real-reseed,rlc-T2", steps=12),
                      {"source": {"rlc-T2": {"base": "rlc", "calibration_temperature": 2.0}}}, tmp_path / "study")
    assert [s.name for s in more.sources] == ["real", "real-reseed", "rlc-T2"]  # sources may be added
    assert more.source("rlc-T2").synth.calibration_temperature == 2.0 and more.source("rlc-T2").synth.rounds == 4
    assert [job.config.seed for job in more.jobs[::3]] == [0, 1, 0]  # real-reseed: another training seed
    stored = json.loads((tmp_path / "study" / "study.json").read_text())
    stored["sources"]["real"]["seed_offset"] = 5
    (tmp_path / "study" / "study.json").write_text(json.dumps(stored))
    with pytest.raises(UsageError, match="source 'real' was made with other settings"):
        plan_study(config, {}, tmp_path / "study")
    with pytest.raises(UsageError, match="other architectures .*num_archs: 3 on disk vs 4 requested"):
        plan_study(StudyConfig(space="spos", num_archs=4, candidates=60, sources="real"), {}, tmp_path / "study")
    with pytest.raises(UsageError, match="other settings .*steps: 12 on disk vs 20 requested"):
        plan_study(StudyConfig(space="spos", num_archs=3, candidates=60, sources="real", steps=20), {},
                   tmp_path / "study")


@pytest.mark.parametrize("space", ["darts", "spos", "proxyless"])
def test_sample_is_seeded_distinct_and_spread_over_macs(tmp_path, space):
    config = StudyConfig(space=space, num_archs=5, candidates=200, seed=1)
    archs, dicts = sample_architectures(config, tmp_path)
    again, _ = sample_architectures(config, tmp_path)
    assert [a.choices for a in archs] == [a.choices for a in again]
    assert len({json.dumps(a.choices) for a in archs}) == 5
    macs = [a.macs for a in archs]
    assert macs == sorted(macs) and macs[0] < macs[-1]
    assert len(dicts) == len(archs)  # (an empty `dicts` made the next line pass vacuously)
    assert all(d["space"] == space and d["derived"]["flops"] == a.macs for a, d in zip(archs, dicts.values()))
    other, _ = sample_architectures(StudyConfig(space=space, num_archs=5, candidates=200, seed=2), tmp_path)
    assert [a.choices for a in other] != [a.choices for a in archs]
