"""`dfnas-train`: train a searched architecture from scratch, evaluate it on real digits, export it.

    dfnas-train ARCH.json --data DIR|mnist --out DIR [--teacher SPEC [--weights W]] [flags]

`--data mnist` trains with cross-entropy on the real digits; a synthetic dataset directory with the
KL to its stored soft labels; `--teacher` distills online (the teacher labels every augmented
batch). Every TrainConfig value has a flag; `--config FILE` reads the same keys from TOML (flags
override it). Writes model.safetensors, result.json, training_curve.png, model.pt / model.onnx and
a checkpoint per epoch (`--resume` continues). Bad input: one line on stderr, exit code 2; a run
that fails (non-finite loss, failed export check): exit code 1.
"""
from __future__ import annotations

import argparse
import sys

from dfnas.config import Parser, add_config_flags, layered, read_toml, run_main
from dfnas.evaluate.config import TrainConfig

PROG = "dfnas-train"
DEFAULT_OUT = "./dfnas-train-out"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.split("\n")[0], argument_default=argparse.SUPPRESS)
    parser.add_argument("architecture", metavar="ARCH.json", help="architecture file (dfnas-search's architecture.json)")
    parser.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags (flags override it)")
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(parser, TrainConfig())
    return parser


def progress_bar(quiet: bool, desc: str = PROG):
    """(Progress, echo): a tqdm bar over the steps labelled `desc`, or nothing with `quiet`."""
    from dfnas.evaluate.retrain import Progress

    if quiet:
        return Progress(), lambda message: None
    from tqdm import tqdm

    bar, shown = None, {}

    def start(done: int, total: int) -> None:
        nonlocal bar
        bar = tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, desc=desc)

    def step(done: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", **shown, refresh=False)

    def epoch(record: dict) -> None:  # the last evaluation stays on the bar until the next one
        shown["epochs"] = record["epoch"]
        shown.update({name: f"{record[key]:.3f}" for key, name in (("test_accuracy", "test"), ("val_agreement", "val"))
                      if key in record})
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", **shown)
        if bar.n >= bar.total:
            bar.close()

    return Progress(start, step, epoch), tqdm.write


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    values = read_toml(args.config) if "config" in args else {}
    out = values.pop("out", DEFAULT_OUT)
    resume = bool(values.pop("resume", False))
    config = layered(TrainConfig(), values, args)
    from dfnas.evaluate.run import train_architecture

    progress, echo = progress_bar(getattr(args, "quiet", False))
    outcome = train_architecture(args.architecture, config, getattr(args, "out", out),
                                 resume=getattr(args, "resume", resume), progress=progress, echo=echo)
    print(f"{PROG}: {outcome.summary()}")
    return 0 if outcome.ok else 1


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, run, argv)


if __name__ == "__main__":
    sys.exit(main())
