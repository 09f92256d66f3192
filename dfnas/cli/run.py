"""`dfnas-run`: the whole job in one command — synthesize, search, distill the winner, report.

With no arguments it runs on the bundled digit teacher into ./dfnas-run-out in a few minutes on a
CPU and ends with a verdict line: how close the data-free student comes to the teacher on real
held-out digits. Rerunning the same command continues from what is on disk. `--config FILE` is a
TOML file with the flags' keys at the top and the tables [synth], [search] and [train] holding any
setting of dfnas-synth, dfnas-search and dfnas-train for their stage.
"""
from __future__ import annotations

import argparse
import sys

from dfnas.config import Parser, add_config_flags, layered, read_toml, run_main

DEFAULT_OUT = "./dfnas-run-out"


def build_parser() -> argparse.ArgumentParser:
    from dfnas.evaluate.pipeline import PipelineConfig

    parser = Parser(prog="dfnas-run", description=__doc__.split("\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: {DEFAULT_OUT}); rerun to continue")
    parser.add_argument("--config", metavar="FILE", help="TOML: these flags' keys, plus [synth], [search], [train] tables")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(parser, PipelineConfig())
    return parser


def run(argv: list[str] | None) -> int:
    from dfnas.cli import synth, train
    from dfnas.evaluate.pipeline import STAGE_TABLES, PipelineConfig, Reporting, run_pipeline

    args = build_parser().parse_args(argv)
    values = read_toml(args.config) if "config" in args else {}
    tables = {name: values.pop(name) for name in STAGE_TABLES if isinstance(values.get(name), dict)}
    out = getattr(args, "out", values.pop("out", DEFAULT_OUT))
    config = layered(PipelineConfig(), values, args)
    quiet = getattr(args, "quiet", False)
    train_progress, echo = train.progress_bar(quiet)
    reporting = Reporting(synth.progress_bar(quiet), train_progress, not quiet, print if quiet else echo)
    result = run_pipeline(config, out, tables, reporting)
    print(f"dfnas-run: {result.verdict}; report: {result.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("dfnas-run", run, argv)


if __name__ == "__main__":
    sys.exit(main())
