"""`dfnas-synth`: synthesize a labelled dataset from a teacher (defaults: the bundled digit teacher).

Every SynthConfig value has a flag; `--config FILE` reads the same keys from TOML; flags override
the file, the file overrides the defaults. Bad input ends with one line on stderr and exit code 2.
Run under `torchrun --nproc-per-node N` to split the shards over N processes.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

from dfnas.data.writer import DatasetWriteError
from dfnas.synth.config import ConfigError, SynthConfig
from dfnas.synth.engine import NonFiniteLossError, Progress

DEFAULT_OUT = "./dfnas-synth-out"
FIELD_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}


class UsageError(Exception):
    """Bad command-line input; reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dfnas-synth", description=__doc__.split("\n")[0],
                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help="TOML file with config keys (flags override it)")
    parser.add_argument("--out", metavar="DIR", help=f"output dataset directory (default {DEFAULT_OUT})")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (verified shards are kept)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for field in dataclasses.fields(SynthConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['help']} (default: {field.default})"
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=FIELD_TYPES[field.type], choices=field.metadata.get("choices"),
                                help=help_text)
    return parser


def read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"config file {path!r} is not valid TOML: {error}") from None


def config_from_args(args: argparse.Namespace) -> tuple[SynthConfig, str, bool]:
    """(config, out dir, resume) from defaults < TOML file < flags."""
    values = read_toml(args.config) if "config" in args else {}
    out = values.pop("out", DEFAULT_OUT)
    resume = bool(values.pop("resume", False))
    names = {field.name for field in dataclasses.fields(SynthConfig)}
    values.update({name: value for name, value in vars(args).items() if name in names})
    return SynthConfig.from_dict(values), getattr(args, "out", out), getattr(args, "resume", resume)


def progress_bar(quiet: bool):
    """A factory giving rank 0 a tqdm bar fed by the engine's Progress reports."""

    def factory(world, total_iterations: int):
        if quiet or not world.is_main:
            return None
        from tqdm import tqdm

        bar = tqdm(total=total_iterations, unit="it", dynamic_ncols=True)
        done_in_round: dict[tuple[int, int], int] = {}

        def report(event: Progress) -> None:
            key = (event.shard, event.round)
            bar.update(event.iteration - done_in_round.get(key, 0))
            done_in_round[key] = event.iteration
            losses = event.losses
            bar.set_description(f"batch {event.shard} round {event.round}", refresh=False)
            bar.set_postfix(loss=f"{losses['total']:.3f}", cls=f"{losses['class_']:.3f}", bn=f"{losses['bn']:.2f}",
                            agree=f"{event.agreement:.0%}", refresh=False)
            if event.iteration == event.iterations and bar.n >= bar.total:
                bar.close()

        return report

    return factory


def fail(error: BaseException, code: int) -> int:
    """Report `error` as one line on stderr; return the exit code."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"dfnas-synth: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        config, out, resume = config_from_args(args)
        config.validate()
    except (UsageError, ConfigError, TypeError) as error:
        return fail(error, 2)
    from dfnas.synth.run import synthesize_dataset

    try:
        result = synthesize_dataset(config, out, resume=resume, progress=progress_bar(getattr(args, "quiet", False)))
    except NonFiniteLossError as error:
        return fail(error, 1)
    except (ConfigError, DatasetWriteError, ValueError, OSError, LookupError, ImportError) as error:
        return fail(error, 2)
    if result.summary is not None:
        summary = result.summary
        print(f"dfnas-synth: {summary['num_images']} images in {Path(out)} ({result.seconds:.0f} s); "
              f"teacher agrees with targets on {summary['agreement_with_targets']:.1%}, "
              f"mean confidence {summary['mean_teacher_confidence']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
