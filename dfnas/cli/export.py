"""`dfnas-export`: write a synthetic dataset as PNG class folders plus a soft-label CSV."""
from __future__ import annotations

import argparse
import sys

from dfnas.data.export import CSV_NAME, export_png


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfnas-export",
        description="Export a synthetic dataset (a dfnas-synth output directory) to PNG files in class "
        f"folders (ImageFolder layout) and {CSV_NAME} with the teacher's class probabilities.",
    )
    parser.add_argument("dataset", help="synthetic dataset directory (holds manifest.json)")
    parser.add_argument("out", help="directory to create with the PNG files")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature for the CSV's probabilities")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out fraction per class (the CSV's split column)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the shards' sha256 check")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        count = export_png(
            args.dataset,
            args.out,
            temperature=args.temperature,
            val_fraction=args.val_fraction,
            verify=args.verify,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as error:  # FileNotFoundError is an OSError
        print(f"dfnas-export: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count} images and {CSV_NAME} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
