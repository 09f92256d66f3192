"""`dfnas-consistency`: rank N architectures by training them on real and on synthetic data; report agreement.

    dfnas-consistency --space spos --num-archs 12 --sources real,real-reseed,noise,reg,rlc,full --out DIR [--workers W]

Every architecture is trained with the same budget on every source and evaluated on the real
held-out digits; report.md gives Spearman rho and Kendall tau of each source's ranking against
`real` (all architectures and the top half) with bootstrap intervals. `--config FILE` is a TOML
file with the flags' keys at the top, a [train] table (dfnas-train settings of every training)
and [source.<name>] tables (a built-in source's synthesis settings, or a new named source with
`base = "rlc"` and its settings). Rerunning the same command continues. Under `torchrun` each
rank trains its share; rank 0 writes the report. Bad input: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from dfnas.config import Parser, add_config_flags, layered, read_toml, run_main

PROG = "dfnas-consistency"
DEFAULT_OUT = "./dfnas-consistency-out"


def build_parser() -> argparse.ArgumentParser:
    from dfnas.evaluate.consistency import StudyConfig

    parser = Parser(prog=PROG, description=__doc__.split("\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: {DEFAULT_OUT}); rerun to continue")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML: these flags' keys, plus [train] and [source.<name>] tables (docs/consistency.md)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-training lines")
    add_config_flags(parser, StudyConfig())
    return parser


def run(argv: list[str] | None) -> int:
    from dfnas.cli import synth
    from dfnas.evaluate.consistency import Reporting, StudyConfig, run_study

    args = build_parser().parse_args(argv)
    values = read_toml(args.config) if "config" in args else {}
    # every table goes to the study, which names the ones it does not know
    tables = {name: values.pop(name) for name in list(values) if isinstance(values[name], dict)}
    out = getattr(args, "out", values.pop("out", DEFAULT_OUT))
    config = layered(StudyConfig(), values, args)
    quiet = getattr(args, "quiet", False)
    reporting = Reporting(synth.progress_bar(quiet), (lambda message: None) if quiet else print)
    result = run_study(config, out, tables, reporting)
    if result is not None:
        print(f"{PROG}: {summary_line(result.agreement)}; report: {result.report}")
    return 0


def summary_line(stats: dict) -> str:
    parts = []
    for name, entry in stats["sources"].items():
        if "all" in entry:
            rho = entry["all"]["spearman_rho"]
            parts.append(f"{name} rho {'n/a' if rho is None else f'{rho:+.2f}'}")
    return "rank agreement with real: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, run, argv)


if __name__ == "__main__":
    sys.exit(main())
