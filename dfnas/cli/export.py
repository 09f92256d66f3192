"""`dfnas-export`: write a synthetic dataset as PNG class folders plus a soft-label CSV (docs/commands.md)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from dfnas.config import Parser, add_config_flags, layered, option, run_main
from dfnas.data.export import CSV_NAME, export_png


@dataclass(frozen=True)
class ExportOptions:
    temperature: float = option(1.0, "softmax temperature of the CSV's probabilities", above=0, max=1e6)
    val_fraction: float = option(0.1, "held-out fraction per class (the CSV's split column)", above=0, max=0.9)
    overwrite: bool = option(False, "replace OUT if it exists and is not empty")
    verify: bool = option(True, "check the shards' sha256 before reading them")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dfnas-export",
        description="Export a synthetic dataset (a dfnas-synth output directory) to PNG files in class "
        f"folders (ImageFolder layout) and {CSV_NAME} with the teacher's class probabilities.",
    )
    parser.add_argument("dataset", help="synthetic dataset directory (holds manifest.json)")
    parser.add_argument("out", help="directory to create with the PNG files")
    add_config_flags(parser, ExportOptions())
    return parser


def run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    options = layered(ExportOptions(), {}, args)
    count = export_png(args.dataset, args.out, temperature=options.temperature, val_fraction=options.val_fraction,
                       verify=options.verify, overwrite=options.overwrite)
    print(f"wrote {count} images and {CSV_NAME} to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("dfnas-export", run, argv)


if __name__ == "__main__":
    sys.exit(main())
