"""The one config mechanism: typed layering, value checks, TOML errors, flags whose help is true."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from dfnas.config import Parser, UsageError, add_config_flags, apply, check, layered, option, read_toml, run_main


@dataclass(frozen=True)
class Inner:
    population: int = option(5, "candidates per generation", min=1)


@dataclass(frozen=True)
class Settings:
    lr: float = option(0.1, "learning rate", above=0)
    steps: int = option(10, "optimizer steps", min=1, max=1000)
    mode: str = option("fast", "how to run", choices=("fast", "slow"))
    betas: tuple[float, float] = option((0.5, 0.9), "Adam betas")
    limit: float | None = option(None, "optional cap", min=0)
    flip: bool = option(True, "mirror images")
    inner: Inner = option(default_factory=Inner)

    def check(self) -> None:
        if self.mode == "slow" and self.steps > 100:
            raise ValueError("slow mode takes at most 100 steps")


@pytest.mark.parametrize("values, message", [
    ({"lr": math.nan}, "lr must be a finite number"),
    ({"lr": math.inf}, "lr must be a finite number"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"steps": 10**6}, "steps must be <= 1000"),
    ({"mode": "warp"}, "mode must be one of fast, slow"),
    ({"betas": (0.5, math.nan)}, "betas must be a finite number"),
    ({"limit": -1.0}, "limit must be >= 0"),
    ({"inner": {"population": 0}}, "inner.population must be >= 1"),
    ({"mode": "slow", "steps": 500}, "slow mode takes at most 100 steps"),  # the class's own rule
])
def test_check_names_the_bad_value(values, message):
    with pytest.raises(UsageError, match=message):
        check(apply(Settings(), values, "test"))


def test_a_good_config_passes_and_apply_coerces_types():
    config = apply(Settings(), {"lr": 1, "betas": [0.1, 0.2], "inner": {"population": 3}, "limit": None}, "t")
    check(config)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.betas == (0.1, 0.2) and config.inner.population == 3 and config.limit is None


@pytest.mark.parametrize("values, message", [
    ({"stpes": 3}, "unknown setting 'stpes'"),
    ({"steps": 2.5}, "should be a int"),
    ({"steps": True}, "should be a int"),
    ({"flip": 1}, "should be a bool"),
    ({"betas": [0.1]}, "must be a list of 2"),
    ({"inner": 3}, "must be a table"),
    ({"lr": None}, "cannot be empty"),
])
def test_apply_rejects_unknown_keys_and_wrong_types(values, message):
    with pytest.raises(UsageError, match=message):
        apply(Settings(), values, "file")


def test_toml_errors_are_one_line_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
    with pytest.raises(UsageError, match="is a directory"):
        read_toml(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(UsageError, match="not valid TOML"):
        read_toml(binary)


def _parser(defaults: Settings) -> Parser:
    parser = Parser(prog="t")
    add_config_flags(parser, defaults)
    return parser


def test_flags_layer_over_the_file_and_help_shows_the_default_in_use(tmp_path):
    preset = Settings(steps=42)  # e.g. a preset: help must say 42, not the class default 10
    parser = _parser(preset)
    help_text = " ".join(parser.format_help().split())
    assert "optimizer steps (default: 42)" in help_text and "(default: 0.5 0.9)" in help_text
    assert "candidates per generation (default: 5)" in help_text  # nested table -> --inner-population
    args = parser.parse_args(["--lr", "0.5", "--inner-population", "7", "--no-flip"])
    config = layered(preset, {"lr": 0.2, "mode": "slow"}, args)
    assert (config.lr, config.mode, config.steps, config.inner.population, config.flip) == (0.5, "slow", 42, 7, False)


def test_parser_errors_and_nan_flags_are_usage_errors():
    parser = _parser(Settings())
    with pytest.raises(UsageError, match="invalid choice"):
        parser.parse_args(["--mode", "warp"])
    with pytest.raises(UsageError, match="invalid int value"):
        parser.parse_args(["--steps", "1e15"])
    with pytest.raises(UsageError, match="finite"):
        layered(Settings(), {}, parser.parse_args(["--lr", "nan"]))


def test_run_main_gives_one_line_and_the_exit_code(capsys):
    def bad_input(argv):
        raise UsageError("--steps must be >= 1,\n   got 0")

    def failed_run(argv):
        from dfnas.config import RunFailed
        raise RunFailed("loss became nan at step 3")

    assert run_main("prog", bad_input) == 2
    assert capsys.readouterr().err == "prog: error: --steps must be >= 1, got 0\n"
    assert run_main("prog", failed_run) == 1
    assert capsys.readouterr().err == "prog: error: loss became nan at step 3\n"
    assert run_main("prog", lambda argv: 0) == 0
