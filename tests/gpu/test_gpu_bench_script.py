"""benchmarks/gpu/bench_ops.py runs (on the CPU kernels, with a wall-clock timer) and writes its CSV,
so the GPU benchmark cannot rot on machines without a GPU."""
import csv
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_benchmark_script_smoke_run(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_ops", ROOT / "benchmarks" / "gpu" / "bench_ops.py")
    bench_ops = importlib.util.module_from_spec(spec)
    sys.modules["bench_ops"] = bench_ops
    try:
        spec.loader.exec_module(bench_ops)
        assert bench_ops.main(["--device", "cpu", "--quick", "--csv", str(tmp_path / "ops.csv")]) == 0
    finally:
        del sys.modules["bench_ops"]
    rows = list(csv.DictReader(open(tmp_path / "ops.csv")))
    assert {r["op"] for r in rows} == {"bn_stat_loss", "tv_loss", "crop_windows", "region_adam_"}
    assert {"dfnas[cpu]", "eager"} <= {r["impl"] for r in rows}
    assert all(float(r["gbps"]) > 0 and int(r["bytes"]) > 0 for r in rows)
