"""`dfnas-synth`: synthesize a labelled dataset from a teacher (defaults: the bundled digit teacher).

Every SynthConfig value has a flag; `--config FILE` reads the same keys from TOML; flags override
the file, the file overrides the defaults. Bad input ends with one line on stderr and exit code 2.
Run under `torchrun --nproc-per-node N` to split the shards over N processes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dfnas.config import Parser, add_config_flags, layered, read_toml, run_main
from dfnas.synth.config import SynthConfig

if TYPE_CHECKING:  # the engine is imported when a run starts, not for --help
    from dfnas.synth.engine import Progress

DEFAULT_OUT = "./dfnas-synth-out"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dfnas-synth", description=__doc__.split("\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags (flags override it)")
    parser.add_argument("--out", metavar="DIR", help=f"output dataset directory (default: {DEFAULT_OUT})")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (verified shards are kept)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(parser, SynthConfig())
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[SynthConfig, str, bool]:
    """(config, out dir, resume) from defaults < TOML file < flags."""
    values = read_toml(args.config) if "config" in args else {}
    out = values.pop("out", DEFAULT_OUT)
    resume = values.pop("resume", False)
    return layered(SynthConfig(), values, args), getattr(args, "out", out), bool(getattr(args, "resume", resume))


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


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    config, out, resume = config_from_args(args)
    from dfnas.synth.report import WEAK_CLASS, weak_classes
    from dfnas.synth.run import synthesize_dataset

    result = synthesize_dataset(config, out, resume=resume, progress=progress_bar(getattr(args, "quiet", False)))
    if result.summary is not None:
        summary = result.summary
        print(f"dfnas-synth: {summary['num_images']} images in {Path(out)} ({result.seconds:.0f} s); "
              f"teacher agrees with targets on {summary['agreement_with_targets']:.1%}, "
              f"mean confidence {summary['mean_teacher_confidence']:.3f}")
        weak = weak_classes(summary)
        if weak:
            listed = ", ".join(f"{name} {value:.0%}" for name, value in weak.items())
            print(f"dfnas-synth: warning: the teacher agrees with the target on fewer than {WEAK_CLASS:.0%} of the "
                  f"images of class(es) {listed}; more --iterations usually help", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("dfnas-synth", run, argv)


if __name__ == "__main__":
    sys.exit(main())
