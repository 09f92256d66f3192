"""GPU timings of the dfnas ops: CUDA C++ vs Triton vs eager PyTorch, in one run.

    python benchmarks/gpu/bench_ops.py [--csv gpu_ops.csv] [--quick]

Needs a CUDA device and triton (for `triton.testing.do_bench`, which flushes L2 between runs);
`--device cpu --quick` runs the same code on the CPU kernels with a wall-clock timer, a smoke
test that keeps the script from rotting on machines without a GPU.
Each op is timed on every available dfnas backend (`dfnas.ops.set_backend`) and as the eager
PyTorch a user would write (dfnas.ops.reference in the input dtype; for region Adam also
torch's fused Adam over the whole canvas, what the reference repos effectively run). Bandwidth
is the minimal traffic of docs/gpu.md divided by the median time, reported against a
device-to-device copy measured in the same run. Results go to stdout and a CSV.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import importlib.metadata
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

import dfnas
import dfnas.ops
from dfnas.ops import _backend, reference

QUANTILES = [0.5, 0.2, 0.8]
DEVICE = "cuda"


@dataclass
class Case:
    op: str
    mode: str  # forward | full (forward + backward) | step
    shape: tuple
    dtype: torch.dtype
    layout: str
    bytes_moved: int
    runs: dict[str, Callable[[], object]]  # implementation -> callable


def do_bench(fn: Callable[[], object]) -> list[float]:
    """Milliseconds at QUANTILES."""
    if DEVICE == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, quantiles=QUANTILES, warmup=25, rep=200)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    cuts = statistics.quantiles(times, n=10)
    return [statistics.median(times), cuts[1], cuts[7]]


def copy_bandwidth_gbps() -> float:
    src = torch.empty(256 * 2**20, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    median_ms = do_bench(lambda: dst.copy_(src))[0]
    return 2 * src.numel() / (median_ms * 1e-3) / 1e9


def images(shape, dtype, layout):
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def loss_cases(shape, dtype, layout) -> list[Case]:
    x = images(shape, dtype, layout)
    c = shape[1]
    rm, rv = torch.randn(c, device=DEVICE), torch.rand(c, device=DEVICE) + 0.5
    numel_bytes = x.numel() * x.element_size()
    xg = x.detach().clone().requires_grad_()

    def full(loss_fn, *args):
        return lambda: torch.autograd.grad(loss_fn(xg, *args), xg)

    ops = {
        "bn_stat_loss": (dfnas.ops.bn_stat_loss, reference.bn_stat_loss, (rm, rv)),
        "tv_loss": (dfnas.ops.tv_loss, reference.tv_loss, ("l2",)),
    }
    cases = []
    for name, (fused, eager, args) in ops.items():
        # forward reads x once; the backward reads x and writes grad_x.
        cases.append(Case(name, "forward", shape, dtype, layout, numel_bytes,
                          {"dfnas": lambda f=fused, a=args: f(x, *a), "eager": lambda e=eager, a=args: e(x, *a)}))
        cases.append(Case(name, "full", shape, dtype, layout, 3 * numel_bytes,
                          {"dfnas": full(fused, *args), "eager": full(eager, *args)}))
    return cases


def window_cases(n, c, canvas, window, dtype, layout) -> list[Case]:
    shape = (n, c, canvas, canvas)
    p = images(shape, dtype, layout)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    g = images((n, c, window, window), dtype, layout)
    offsets = torch.randint(0, canvas - window + 1, (n, 2), device=DEVICE)
    window_bytes = n * c * window * window * p.element_size()
    hyper = dict(step=5, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    step_tensor = torch.tensor(5.0, device=DEVICE)
    full_grad = torch.randn_like(p)
    crop = Case("crop_windows", "forward", shape, dtype, layout, 2 * window_bytes, {
        "dfnas": lambda: dfnas.ops.crop_windows(p, offsets, window, window),
        "eager": lambda: reference.crop_windows(p, offsets, window, window),
    })
    # Region Adam reads canvas, grad, m, v and writes canvas, m, v inside the windows.
    adam = Case("region_adam_", "step", shape, dtype, layout, 7 * window_bytes, {
        "dfnas": lambda: dfnas.ops.region_adam_(p, g, m, v, offsets, **hyper),
        "eager": lambda: reference.region_adam_(p, g, m, v, offsets, **hyper),
        "torch_fused_adam_whole_canvas": lambda: torch._fused_adam_(
            [p], [full_grad], [m], [v], [], [step_tensor], lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0,
            eps=1e-8, amsgrad=False, maximize=False),
    })
    return [crop, adam]


def cases(quick: bool) -> list[Case]:
    if quick:
        return loss_cases((8, 16, 32, 32), torch.float32, "contiguous") + window_cases(8, 3, 40, 32, torch.float32,
                                                                                         "contiguous")
    out = []
    for layout in ("contiguous", "channels_last"):
        for dtype in (torch.float32, torch.bfloat16):
            out += loss_cases((256, 64, 56, 56), dtype, layout)  # a ResNet stage-1 BN input
        out += loss_cases((256, 3, 224, 224), torch.float32, layout)  # the synthesized images
        out += window_cases(256, 3, 256, 224, torch.float32, layout)
    return out


def backends() -> list[str]:
    """The dfnas backends to time: every one available for CUDA tensors ("cpu" on the CPU)."""
    if DEVICE == "cpu":
        return ["cpu"]
    info = dfnas.build_info()
    return [b for b in ("cuda", "triton") if (b != "cuda" or info["cuda_built"]) and
            (b != "triton" or _backend.triton_available())]


def _triton_version() -> str:
    return importlib.metadata.version("triton") if _backend.triton_available() else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default="gpu_ops.csv")
    parser.add_argument("--quick", action="store_true", help="small shapes, to check the script runs")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("bench_ops: needs a CUDA device (torch.cuda.is_available() is False); --device cpu for a smoke run")
        return 1
    copy_gbps = copy_bandwidth_gbps()
    gpu = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    print(f"{gpu}: device-to-device copy {copy_gbps:.0f} GB/s (read + write)")
    rows = []
    for case in cases(args.quick):
        for impl, fn in case.runs.items():
            for backend in (backends() if impl == "dfnas" else ["-"]):
                if backend not in ("-", "cpu"):
                    dfnas.ops.set_backend(backend)
                median, p20, p80 = do_bench(fn)
                gbps = case.bytes_moved / (median * 1e-3) / 1e9
                name = f"dfnas[{backend}]" if backend != "-" else impl
                rows.append({
                    "gpu": gpu, "torch": torch.__version__, "triton": _triton_version(),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "op": case.op, "mode": case.mode, "shape": "x".join(map(str, case.shape)),
                    "dtype": str(case.dtype).removeprefix("torch."), "layout": case.layout, "impl": name,
                    "ms_median": f"{median:.4f}", "ms_p20": f"{p20:.4f}", "ms_p80": f"{p80:.4f}",
                    "bytes": case.bytes_moved, "gbps": f"{gbps:.4g}", "copy_gbps": f"{copy_gbps:.4g}",
                    "fraction_of_copy": f"{gbps / copy_gbps:.4g}",
                })
                r = rows[-1]
                print(f"{r['op']:<14} {r['mode']:<8} {r['shape']:<16} {r['dtype']:<9} {r['layout']:<14} "
                      f"{name:<30} {median:8.3f} ms  {gbps:7.1f} GB/s  {gbps / copy_gbps:6.1%} of copy")
    dfnas.ops.set_backend("auto")
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
