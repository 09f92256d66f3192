"""`dfnas-prune`: make a teacher smaller with only its synthetic data (data-free channel pruning).

    dfnas-prune --data SYNTH_DIR (--ratio R | --target-macs M) [--teacher SPEC --weights W] --out DIR

Searches per-layer channel ratios under the MACs budget (candidates scored on synthetic images
after BatchNorm recalibration), distills the best one, and the uniform pruning at the same budget,
from the teacher on the synthetic set, and reports both against the teacher on real digits when
the teacher is a digit classifier. Writes pruned.safetensors + pruned.json (load it with
load_teacher('dfnas.prune.pruned:build', weights='OUT/pruned.safetensors')), ratios.json,
candidates.json, accuracy_vs_macs.png and result.json. `--resume` continues a killed run. Bad
input: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from dfnas.config import Parser, add_config_flags, layered, read_toml, run_main
from dfnas.prune.config import PruneConfig

PROG = "dfnas-prune"
DEFAULT_OUT = "./dfnas-prune-out"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.split("\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags (flags override it)")
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(parser, PruneConfig())
    return parser


def generation_bar(quiet: bool):
    """A tqdm bar over the search's generations, made at the first report (after the input checks)."""
    if quiet:
        return lambda index, total, best: None
    from tqdm import tqdm

    bar = None

    def update(index: int, total: int, best: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=index - 1, unit="generation", dynamic_ncols=True, desc=f"{PROG} search")
        bar.update(1)
        bar.set_postfix(best=f"{best['agreement']:.3f}", mmacs=f"{best['macs'] / 1e6:.3g}")
        if index >= total:
            bar.close()

    return update


def run(argv: list[str] | None) -> int:
    from dfnas.cli.train import progress_bar
    from dfnas.prune.run import prune_teacher

    args = build_parser().parse_args(argv)
    values = read_toml(args.config) if "config" in args else {}
    out = getattr(args, "out", values.pop("out", DEFAULT_OUT))
    resume = getattr(args, "resume", bool(values.pop("resume", False)))
    config = layered(PruneConfig(), values, args)
    quiet = getattr(args, "quiet", False)
    echo = progress_bar(quiet)[1]
    outcome = prune_teacher(config, out, resume=resume, on_generation=generation_bar(quiet),
                            train_progress=lambda stage: progress_bar(quiet, f"{PROG} {stage}")[0], echo=echo)
    print(f"{PROG}: {outcome.summary()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, run, argv)


if __name__ == "__main__":
    sys.exit(main())
