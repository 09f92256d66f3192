"""`dfnas-search` input handling: one-line errors with exit code 2, layered settings, resume checks."""
from __future__ import annotations

import json

import torch

from dfnas.cli.search import main
from dfnas.nas.strategies import DartsSearchConfig, SposSearchConfig
from dfnas.config import apply, check
from dfnas.nas.search_run import strategy_config
from dfnas.nas.strategies.spos import SPOS_TINY

from test_search_data import write_tiny_dataset

FAST = ["--channels-last", "off", "--amp", "off", "--threads", str(torch.get_num_threads()), "--quiet"]


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dfnas-search: error:")
    return err


def test_dataset_errors(tmp_path, capsys):
    assert "does not exist" in _error(capsys, ["spos", "--data", str(tmp_path / "nope"), *FAST])
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    (root / "manifest.json").write_text("{not json")
    assert "corrupt" in _error(capsys, ["spos", "--data", str(root), *FAST])
    root = write_tiny_dataset(tmp_path / "ds2", count=40, num_classes=4)
    assert "4 classes but the search was configured for 10" in _error(
        capsys, ["darts", "--data", str(root), "--num-classes", "10", *FAST])


def test_impossible_flops_limits(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    err = _error(capsys, ["spos", "--data", str(root), "--flops-limit", "0.00001", "--batch-size", "8", *FAST])
    assert "impossible" in err and "MFLOPs" in err
    err = _error(capsys, ["proxyless", "--data", str(root), "--target", "0.00001", "--batch-size", "8", *FAST])
    assert "impossible" in err


def test_bad_settings(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    assert "invalid choice: 3" in _error(capsys, ["darts", "--data", str(root), "--order", "3", *FAST])
    toml = tmp_path / "bad.toml"
    toml.write_text("populaton = 3\n")
    assert "unknown setting 'populaton'" in _error(capsys, ["spos", "--data", str(root), "--config", str(toml), *FAST])
    assert "batch size 64 is larger" in _error(capsys, ["spos", "--data", str(root), "--batch-size", "64", *FAST])
    assert "--data" in _error(capsys, ["spos"])


def test_settings_are_layered(tmp_path):
    def layered(name, preset, file_values, flags):
        config = apply(apply(strategy_config(name, preset), file_values, "file"), flags, "flags")
        check(config)
        return config

    config = layered("spos", "tiny", {"epochs": 7, "evolution": {"top_k": 2}}, {"evolution": {"population": 9}})
    assert (config.epochs, config.evolution.top_k, config.evolution.population) == (7, 2, 9)
    assert config.evolution.generations == SPOS_TINY["evolution"]["generations"]
    reference = layered("spos", "reference", {}, {})
    assert (reference.evolution.population, reference.evolution.top_k, reference.evolution.generations,
            reference.evolution.mutations, reference.evolution.crossovers,
            reference.evolution.mutation_prob) == (50, 10, 20, 25, 25, 0.1)
    darts = layered("darts", "reference", {"arch_betas": [0.4, 0.9]}, {})
    assert darts.arch_betas == (0.4, 0.9) and darts.arch_lr == 3e-4 and darts.space_preset == "reference"
    assert isinstance(darts, DartsSearchConfig) and isinstance(reference, SposSearchConfig)


def test_resume_refuses_other_settings(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    out = tmp_path / "run"
    common = ["proxyless", "--data", str(root), "--out", str(out), "--batch-size", "8", "--epochs", "2",
              "--calib-batch-size", "8", *FAST]
    assert main(common + ["--stop-after", "1"]) == 0
    assert "already holds a search checkpoint" in _error(capsys, common)
    assert "different settings (config.seed)" in _error(capsys, common + ["--resume", "--seed", "5"])
    assert main(common + ["--resume"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == {"channels_last": False, "amp": "off"}
    assert json.loads((out / "architecture.json").read_text())["space"] == "proxyless"
    assert (out / "alphas.png").exists()
