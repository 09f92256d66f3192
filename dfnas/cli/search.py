"""`dfnas-search`: search an architecture on a synthetic dataset (soft labels) or real MNIST.

    dfnas-search {darts,spos,proxyless} --data DIR|mnist [--out DIR] [--config FILE] [flags]

Settings are layered: `--preset` (tiny: minutes on a CPU; reference: the published
hyperparameters and space sizes), then `--config FILE` (TOML, same keys as the flags), then flags.
Writes to `--out`: config.json, log.jsonl (one record per epoch/generation), checkpoint.pt (after
every unit; `--resume` continues), architecture.json (buildable with `dfnas.nas.arch`) and PNG
plots. Bad input ends with one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dfnas.nas.search_data import DataError, load_search_data
from dfnas.nas.strategies import STRATEGIES, run_search
from dfnas.nas.strategies.settings import PRESETS, build_config, field_kind, read_toml
from dfnas.nas.train import AMP_DTYPES, Checkpointer, Precision, select_precision, select_threads

RUN_KEYS = ("preset",)
HELP = {
    "seed": "random seed of everything (weights, splits, sampling)",
    "epochs": "supernet training epochs",
    "batch_size": "training batch size",
    "temperature": "distillation temperature T",
    "t2_factor": "multiply the KL by T^2",
    "hard_weight": "weight w of hard-label CE: (1-w) KL + w CE",
    "order": "DARTS: 1 (first order) or 2 (unrolled, finite-difference Hessian)",
    "warmup_epochs": "epochs of weight training before architecture updates",
    "flops_limit": "SPOS evolution: largest MFLOPs of a candidate",
    "train_flops_range": "SPOS supernet: sample paths within MIN MAX MFLOPs",
    "fitness": "SPOS: agreement (top-1 vs teacher) or kl",
    "gate_mode": "ProxylessNAS binary gates: full_v2 or two",
    "arch_update": "ProxylessNAS: gradient (binary gates) or reinforce",
    "regularizer": "ProxylessNAS cost loss: mul#log, add#linear or none",
    "hw_metric": "ProxylessNAS cost: flops (MFLOPs) or latency (ms, from a table)",
    "target": "ProxylessNAS cost target T (default: halfway between the space's extremes)",
    "latency_table": "ProxylessNAS latency table JSON (default: measured on this device)",
}


class UsageError(Exception):
    """Bad input; reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def _add_config_flags(parser: argparse.ArgumentParser, config_type: type, prefix: str = "") -> None:
    for field in dataclasses.fields(config_type):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default):
            _add_config_flags(parser, type(default), f"{prefix}{field.name}.")
            continue
        name = f"{prefix}{field.name}"
        flag = "--" + name.replace(".", "-").replace("_", "-")
        kind, length, _ = field_kind(field)
        help_text = f"{HELP.get(field.name, field.name.replace('_', ' '))} (reference: {default})"
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=kind, nargs=length, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dfnas-search", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="strategy", required=True, parser_class=_Parser)
    for name, (_, config_type, _) in STRATEGIES.items():
        sub = commands.add_parser(name, help=f"{name} search", argument_default=argparse.SUPPRESS)
        sub.add_argument("--data", required=True, metavar="DIR|mnist",
                         help="synthetic dataset directory, or 'mnist' for the real digits")
        sub.add_argument("--out", metavar="DIR", help=f"output directory (default ./search-{name})")
        sub.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the flags")
        sub.add_argument("--preset", choices=PRESETS, help="starting point of the settings (default tiny)")
        sub.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
        sub.add_argument("--threads", help="CPU threads for torch: a number, or auto (default): torch's "
                                           "default or 1, whichever trains faster right now (shared machines)")
        sub.add_argument("--channels-last", choices=("auto", "on", "off"),
                         help="memory format; auto (default) times both on the supernet and keeps the faster")
        sub.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"),
                         help="autocast dtype; auto (default) keeps bf16 only where it measures faster; "
                              "fp16 is CUDA only")
        sub.add_argument("--val-fraction", type=float, help="synthetic val split fraction (default 0.1)")
        sub.add_argument("--num-classes", type=int, help="fail unless the dataset has this many classes")
        sub.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
        sub.add_argument("--stop-after", type=int, metavar="N",
                         help="stop after N epochs/generations in total (resume later with --resume)")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        _add_config_flags(sub, config_type)
    return parser


def _nest(values: dict) -> dict:
    """{'evolution.population': 5} -> {'evolution': {'population': 5}}."""
    nested: dict = {}
    for key, value in values.items():
        *tables, leaf = key.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
        target[leaf] = value
    return nested


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {spec!r} requested but CUDA is not available")
    return device


def _measured_setup(strategy_type: type, config, data, device: torch.device, run_flags: dict,
                    threads: str) -> tuple:
    """Build the strategy under the precision (and, with `threads` auto, the CPU thread count)
    that trains its supernet fastest here. Returns (strategy, precision, measured seconds)."""
    plain = Precision(device)
    strategy = strategy_type(config, data, plain)
    probe_images = data.train.fixed_batches(config.batch_size, 1)[0].images
    precision, timings = select_precision(device, run_flags.get("channels_last", "auto"),
                                          run_flags.get("amp", "auto"), strategy.model,
                                          strategy.probe_forward, probe_images)
    if threads == "auto":
        chosen, thread_timings = select_threads(strategy.model, strategy.probe_forward, probe_images, precision)
        torch.set_num_threads(chosen)
        timings.update({f"threads={k}": v for k, v in thread_timings.items()})
    if precision != plain:
        strategy = strategy_type(config, data, precision)
    return strategy, precision, timings


def run(argv: list[str] | None) -> int:
    args = vars(build_parser().parse_args(argv))
    name = args.pop("strategy")
    strategy_type, config_type, tiny = STRATEGIES[name]
    run_flags = {k: args.pop(k) for k in ("data", "out", "config", "preset", "device", "threads", "channels_last",
                                          "amp", "val_fraction", "num_classes", "resume", "stop_after", "quiet")
                 if k in args}
    file_values = read_toml(run_flags["config"]) if "config" in run_flags else {}
    preset = run_flags.get("preset", file_values.pop("preset", "tiny"))
    config = build_config(config_type, tiny, preset, file_values, _nest(args))
    threads = run_flags.get("threads", "auto")
    if threads != "auto":
        if not threads.isdigit() or int(threads) < 1:
            raise UsageError(f"--threads must be a positive number or auto, got {threads!r}")
        torch.set_num_threads(int(threads))
    device = _device(run_flags.get("device", "auto"))
    out = Path(run_flags.get("out", f"search-{name}"))
    resume = run_flags.get("resume", False)
    quiet = run_flags.get("quiet", False)
    echo = print if quiet else tqdm.write

    if not resume and Checkpointer(out / "checkpoint.pt").exists():
        raise UsageError(f"{out} already holds a search checkpoint; pass --resume or choose another --out")
    started = time.perf_counter()
    data = load_search_data(run_flags["data"], device, run_flags.get("val_fraction", 0.1),
                            run_flags.get("num_classes"))
    echo(f"data: {data.source}: {len(data.train)} train / {len(data.val)} val images, "
         f"{data.num_classes} classes, {data.input_size}x{data.input_size}, "
         f"{'teacher soft labels' if data.soft_labels else 'hard labels'}; device {device}")
    if resume:  # the saved choices: another precision or thread count could change the result
        saved = Checkpointer(out / "checkpoint.pt").load()["run_config"]
        precision = Precision(device, saved["precision"]["channels_last"], AMP_DTYPES[saved["precision"]["amp"]])
        strategy, timings = strategy_type(config, data, precision), {}
        threads = str(saved["threads"]) if threads == "auto" else threads
        torch.set_num_threads(int(threads))
    else:
        strategy, precision, timings = _measured_setup(strategy_type, config, data, device, run_flags, threads)
    echo(f"precision: {precision.name}, {torch.get_num_threads()} threads"
         + (f" (measured step seconds: {json.dumps({k: round(v, 4) for k, v in timings.items()})})"
            if timings else ""))
    run_config = {"strategy": name, "config": config.to_dict(), "precision": precision.to_dict(),
                  "threads": torch.get_num_threads(),
                  "data": {"source": data.source, "num_classes": data.num_classes, "train": len(data.train),
                           "val": len(data.val), "val_fraction": run_flags.get("val_fraction", 0.1)}}
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        _write_json(out / "config.json", {**run_config, "preset": preset, "measured_step_seconds": timings,
                                          "device": str(device)})
    outcome = run_search(strategy, out, run_config, resume=resume, stop_after=run_flags.get("stop_after"),
                         progress_bar=not quiet, echo=echo)
    if not outcome.finished:
        echo(f"stopped after {outcome.next_unit} of {strategy.num_units} {strategy.unit_name}s; "
             f"continue with --resume --out {out}")
        return 0
    arch = outcome.architecture
    arch.save(out / "architecture.json")
    plots = strategy.plot(out)
    echo(f"architecture: {out / 'architecture.json'} ({arch.derived['flops'] / 1e6:.4g} MFLOPs, "
         f"{arch.derived['params'] / 1e6:.4g} M params); plots: {', '.join(str(p) for p in plots)}; "
         f"{time.perf_counter() - started:.1f} s")
    return 0


def _write_json(path: Path, payload: dict) -> None:
    from dfnas.files import atomic_write_json

    atomic_write_json(path, json.loads(json.dumps(payload, default=str)))


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except UsageError as error:
        print(f"dfnas-search: error: {error}", file=sys.stderr)
        return 2
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"dfnas-search: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dfnas-search: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
