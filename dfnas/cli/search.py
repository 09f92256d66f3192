"""`dfnas-search`: search an architecture on a synthetic dataset (soft labels) or real MNIST.

    dfnas-search {darts,spos,proxyless,nat} --data DIR|mnist [--out DIR] [--config FILE] [flags]

Settings are layered: `--preset` (tiny: minutes on a CPU; reference: the published
hyperparameters and space sizes), then `--config FILE` (TOML, same keys as the flags), then flags.
Writes to `--out`: config.json, log.jsonl (one record per epoch/generation), checkpoint.pt (after
every unit; `--resume` continues), architecture.json (buildable with `dfnas.nas.arch`) and PNG
plots; NAT adds its Pareto front (front/*.json) and archive (archive.json, archive.csv). Bad input ends with one line on stderr and exit code 2.
Runs data parallel under `torchrun --nproc-per-node N -m dfnas.cli.search ...` (docs/search.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from dfnas.config import Parser, add_config_flags, layered, read_toml, run_main

NOTE = " with the tiny preset"


def build_parser() -> argparse.ArgumentParser:
    from dfnas.nas.search_run import RunOptions, strategy_config
    from dfnas.nas.strategies import STRATEGIES

    parser = Parser(prog="dfnas-search", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="strategy", required=True, parser_class=Parser)
    for name in STRATEGIES:
        sub = commands.add_parser(name, help=f"{name} search", argument_default=argparse.SUPPRESS,
                                  description=f"{name} search; settings are shown at their tiny-preset values")
        sub.add_argument("--data", required=True, metavar="DIR|mnist",
                         help="synthetic dataset directory (from dfnas-synth), or 'mnist' for the real digits")
        sub.add_argument("--out", metavar="DIR", help=f"output directory (default: ./search-{name})")
        sub.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags")
        sub.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        add_config_flags(sub, RunOptions())
        add_config_flags(sub, strategy_config(name, "tiny"), note=NOTE)
    return parser


def run(argv: list[str] | None) -> int:
    from dfnas.nas.search_run import RunOptions, search, strategy_config

    args = build_parser().parse_args(argv)
    name = args.strategy
    file_values = read_toml(args.config) if "config" in args else {}
    run_keys = {f.name for f in dataclasses.fields(RunOptions)}
    options = layered(RunOptions(), {k: v for k, v in file_values.items() if k in run_keys}, args)
    strategy_values = {k: v for k, v in file_values.items() if k not in run_keys | {"out", "data"}}
    config = layered(strategy_config(name, options.preset), strategy_values, args)
    out = getattr(args, "out", file_values.get("out", f"search-{name}"))
    quiet = getattr(args, "quiet", False)
    echo = print if quiet else _tqdm_write
    result = search(name, config, args.data, out, options, resume=getattr(args, "resume", False),
                    progress_bar=not quiet, echo=echo)
    if not result.reports:  # another torchrun process: rank 0 reports
        return 0
    if not result.finished:
        echo(f"stopped after {result.next_unit} of {result.num_units} {result.unit_name}s; continue with: "
             f"{resume_command(argv if argv is not None else sys.argv[1:])}")
        return 0
    arch = result.architecture
    for warning in result.warnings:
        print(f"dfnas-search: warning: {warning}", file=sys.stderr)
    metric = result.metrics.get("metric", "agreement")
    score = result.metrics.get(metric, result.metrics.get("agreement"))
    echo(f"plots: {', '.join(str(p) for p in result.plots)}")
    quality = "" if score is None else f"; val {metric} {score:.3f}" + (" (see the warning)" if result.warnings else "")
    front = ""
    if "front_size" in result.metrics:
        size = result.metrics["front_size"]
        front = (f"; front of {size} architecture{'' if size == 1 else 's'} -> {out}/front/, hypervolume "
                 f"{result.metrics['hypervolume']:.4f}")
    echo(f"dfnas-search: {name} winner -> {out}/architecture.json ({arch.derived['flops'] / 1e6:.4g} MMACs, "
         f"{arch.derived['params'] / 1e3:.1f}k params){quality}{front}; {result.seconds:.0f} s")
    return 0


def resume_command(argv: list[str]) -> str:
    """The command that continues this run: the same arguments without --stop-after, plus --resume."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--stop-after":
            skip = True
        elif not token.startswith("--stop-after="):
            kept.append(token)
    return shlex.join(["dfnas-search", *kept, *([] if "--resume" in kept else ["--resume"])])


def _tqdm_write(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message)


def main(argv: list[str] | None = None) -> int:
    return run_main("dfnas-search", run, argv)


if __name__ == "__main__":
    sys.exit(main())
