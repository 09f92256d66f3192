"""The one configuration mechanism of every command: a typed dataclass -> flags, TOML, help, checks.

A command's settings are a dataclass whose fields are declared with `option(...)`: the default,
one line of help, and what values are allowed (choices, bounds). From that one declaration:

- `add_config_flags` gives one `--flag` per field (a nested dataclass `evolution` gives
  `--evolution-<field>`); each help line shows the default the command will really use, because
  it is read from the instance passed in (after any preset), not from the class;
- `apply` layers plain values (a TOML file, the flags given) onto an instance, checking types;
- `check` rejects non-finite numbers, out-of-bound values and unknown choices, naming the field,
  then runs the dataclass's own `check()` (relations between fields), if it has one.

Errors of the user's making are `UsageError`s; `run_main` is the one place that turns them into
one line on stderr and exit code 2 (a run that failed on the way, such as a non-finite loss, is
`RunFailed`: exit code 1).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib


class UsageError(ValueError):
    """Bad input (a flag, a config file, a path, a dataset): reported in one line, exit code 2."""


class RunFailed(RuntimeError):
    """A run that could not finish correctly (e.g. a non-finite loss): one line, exit code 1."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence[Any] | None = None,
           min: float | None = None, max: float | None = None, above: float | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help line and allowed values: `choices`, or bounds
    `min <= value <= max` and `value > above`. Numbers must be finite in any case."""
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "min": min, "max": max,
                "above": above}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ----------------------------------------------------------------------------- field types


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """What a field holds: `scalar` (bool/int/float/str or a dataclass type), `length` for a
    fixed-size tuple of scalars, `optional` when None is allowed."""

    scalar: type
    length: int | None = None
    optional: bool = False

    @property
    def nested(self) -> bool:
        return dataclasses.is_dataclass(self.scalar)


def field_kinds(config_type: type) -> dict[str, FieldKind]:
    """The `FieldKind` of every field of `config_type`, from its (possibly string) annotations."""
    hints = typing.get_type_hints(config_type)
    kinds = {}
    for field in dataclasses.fields(config_type):
        annotation, optional = hints[field.name], False
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = len(args) < len(typing.get_args(annotation))
            annotation = args[0]
        if typing.get_origin(annotation) is tuple:
            args = typing.get_args(annotation)
            kinds[field.name] = FieldKind(args[0], len(args), optional)
        else:
            kinds[field.name] = FieldKind(annotation, None, optional)
    return kinds


def _scalar(value: Any, kind: type, name: str) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise UsageError(f"{name} = {value!r} should be a {kind.__name__}")
    return value


def _coerce(value: Any, kind: FieldKind, name: str) -> Any:
    if value is None:
        if kind.optional:
            return None
        raise UsageError(f"{name} cannot be empty")
    if kind.length is not None:
        if not isinstance(value, (list, tuple)) or len(value) != kind.length:
            raise UsageError(f"{name} must be a list of {kind.length} {kind.scalar.__name__}s, got {value!r}")
        return tuple(_scalar(v, kind.scalar, name) for v in value)
    return _scalar(value, kind.scalar, name)


def apply(config: Any, values: dict, where: str) -> Any:
    """A copy of dataclass `config` with `values` applied ('-' may stand for '_' in keys; nested
    dataclasses take dicts). Unknown keys and wrongly typed values are `UsageError`s."""
    kinds = field_kinds(type(config))
    changes = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in kinds:
            raise UsageError(f"{where}: unknown setting {key!r}; expected one of {', '.join(sorted(kinds))}")
        if kinds[name].nested:
            if not isinstance(value, dict):
                raise UsageError(f"{where}: {key} must be a table of settings")
            changes[name] = apply(getattr(config, name), value, f"{where} [{key}]")
        else:
            changes[name] = _coerce(value, kinds[name], f"{where}: {key}")
    return dataclasses.replace(config, **changes)


def check(config: Any, prefix: str = "") -> None:
    """Raise `UsageError` for the first field whose value is not allowed, then run the
    dataclass's own `check()` for rules that relate several fields."""
    for field in dataclasses.fields(config):
        value, name = getattr(config, field.name), prefix + field.name
        if dataclasses.is_dataclass(value):
            check(value, f"{name}.")
            continue
        for item in value if isinstance(value, tuple) else (value,):
            _check_value(item, field.metadata, name)
    own_check = getattr(config, "check", None)
    if callable(own_check):
        try:
            own_check()
        except UsageError:
            raise
        except ValueError as error:
            raise UsageError(str(error)) from None


def _check_value(value: Any, rules: dict, name: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value}")
    choices = rules.get("choices")
    if choices and value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    low, high, above = rules.get("min"), rules.get("max"), rules.get("above")
    if low is not None and value < low:
        raise UsageError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise UsageError(f"{name} must be <= {high}, got {value}")
    if above is not None and not value > above:
        raise UsageError(f"{name} must be > {above}, got {value}")


# ----------------------------------------------------------------------------- files and flags


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML config file; a missing, unreadable or malformed file is a `UsageError`."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a directory") from None
    except PermissionError:
        raise UsageError(f"config file {path} is not readable") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None


class Parser(argparse.ArgumentParser):
    """argparse whose errors are `UsageError`s (one line through `run_main`, not a usage dump)."""

    def error(self, message: str):
        raise UsageError(message)


def _flag(name: str) -> str:
    return "--" + name.replace(".", "-").replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, defaults: Any, prefix: str = "",
                     note: str = "") -> None:
    """One flag per field of dataclass instance `defaults`; `dest` is the dotted field name.

    Flags default to "not given" (argparse.SUPPRESS), so only what the user typed overrides the
    lower layers. `note` is appended to every default shown (e.g. "with the tiny preset").
    """
    kinds = field_kinds(type(defaults))
    for field in dataclasses.fields(defaults):
        kind, name, value = kinds[field.name], f"{prefix}{field.name}", getattr(defaults, field.name)
        if kind.nested:
            add_config_flags(parser, value, f"{name}.", note)
            continue
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else "not set" if value is None else value
        help_text = f"{field.metadata.get('help') or field.name.replace('_', ' ')} (default: {shown}{note})"
        if kind.scalar is bool:
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, type=kind.scalar, nargs=kind.length,
                                choices=field.metadata.get("choices"), default=argparse.SUPPRESS,
                                metavar=None if field.metadata.get("choices") else field.name.upper(), help=help_text)


def flag_values(args: argparse.Namespace, defaults: Any) -> dict:
    """The config fields given on the command line, nested like the dataclass ('a.b' -> {'a': {'b'}})."""
    nested: dict = {}
    for key, value in vars(args).items():
        *tables, leaf = key.split(".")
        if _has_field(defaults, [*tables, leaf]):
            target = nested
            for table in tables:
                target = target.setdefault(table, {})
            target[leaf] = value
    return nested


def _has_field(config: Any, path: list[str]) -> bool:
    for part in path:
        if not dataclasses.is_dataclass(config) or part not in {f.name for f in dataclasses.fields(config)}:
            return False
        config = getattr(config, part)
    return True


def layered(defaults: Any, file_values: dict, args: argparse.Namespace) -> Any:
    """`defaults` < the TOML file's values < the flags given; checked."""
    config = apply(defaults, file_values, "config file")
    config = apply(config, flag_values(args, defaults), "command line")
    check(config)
    return config


# ----------------------------------------------------------------------------- the error path


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def run_main(prog: str, body: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a command's `body(argv)`; turn the errors a user can cause into one line on stderr.

    Exit codes: 2 bad input (`UsageError`, other `ValueError`s from checks, missing or unusable
    files), 1 a run that failed (`RunFailed`, other OS errors such as a full disk), 130 Ctrl-C.
    """
    try:
        return body(argv)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, FileExistsError) as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except (RunFailed, OSError) as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to continue (with --resume where it has one)",
              file=sys.stderr)
        return 130
