"""TorchScript and ONNX files of a trained network, each reloaded and checked against eager.

- TorchScript (`model.pt`): `torch.jit.script`, or `torch.jit.trace` of the eval-mode network
  where scripting fails (the DARTS cells index Python lists by genotype).
- ONNX (`model.onnx`): `torch.onnx.export(dynamo=False)` (the TorchScript-based exporter: it
  needs no onnxscript), batch axis dynamic; skipped, with a note, when the `onnx` package is not
  installed. Checked with `onnx.checker` and run by onnxruntime if installed, else by onnx's
  reference evaluator.

A check passes when the reloaded file's outputs on a real batch are within `TOLERANCE` (max abs
difference) of the eager model's. Failures are returned, not raised: the trained weights are
fine either way, and result.json says what failed.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from dfnas.config import one_line
from dfnas.files import atomic_open, atomic_write_bytes

TOLERANCE = 1e-4
FILES = {"torchscript": "model.pt", "onnx": "model.onnx"}


def export_all(model: nn.Module, example: torch.Tensor, out_dir: Path, formats: tuple[str, ...]) -> dict:
    """{format: {"file", "ok", "max_abs_diff", ...}} for every requested format."""
    model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
    example = example.detach().to("cpu", torch.float32).contiguous()
    with torch.no_grad():
        expected = model(example)
    exporters = {"torchscript": export_torchscript, "onnx": export_onnx}
    results = {}
    for name in formats:
        try:
            results[name] = exporters[name](model, example, expected, out_dir / FILES[name])
        except Exception as error:  # an exporter can fail in many ways; report, do not lose the run
            results[name] = {"file": None, "ok": False, "error": one_line(error)}
    return results


def _compare(actual: torch.Tensor, expected: torch.Tensor) -> dict:
    diff = float((actual.float() - expected.float()).abs().max())
    return {"max_abs_diff": diff, "tolerance": TOLERANCE, "ok": diff <= TOLERANCE,
            "checked_on": list(expected.shape[:1])[0]}


def export_torchscript(model: nn.Module, example: torch.Tensor, expected: torch.Tensor, path: Path) -> dict:
    method, note = "script", None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream; tracing warns about constants
        try:
            scripted = torch.jit.script(model)
        except Exception as error:
            method, note = "trace", f"script failed: {one_line(error)[:200]}"
            scripted = torch.jit.trace(model, example)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        reloaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        actual = reloaded(example)
    result = {"file": path.name, "method": method, **_compare(actual, expected)}
    if note:
        result["note"] = note
    return result


def export_onnx(model: nn.Module, example: torch.Tensor, expected: torch.Tensor, path: Path) -> dict:
    try:
        import onnx
    except ImportError:
        return {"file": None, "ok": None, "skipped": "the onnx package is not installed (pip install onnx)"}
    names = {"input_names": ["images"], "output_names": ["logits"],
             "dynamic_axes": {"images": {0: "batch"}, "logits": {0: "batch"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated upstream
        buffer = io.BytesIO()
        torch.onnx.export(model, (example,), buffer, dynamo=False, **names)
    with atomic_open(path) as handle:
        handle.write(buffer.getvalue())
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded)
    actual, runtime = _run_onnx(loaded, path, example)
    return {"file": path.name, "exporter": "torch.onnx.export(dynamo=False)", "runtime": runtime, **_compare(actual, expected)}


def _run_onnx(loaded, path: Path, example: torch.Tensor) -> tuple[torch.Tensor, str]:
    inputs = {loaded.graph.input[0].name: example.numpy()}
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return torch.from_numpy(ReferenceEvaluator(loaded).run(None, inputs)[0]), "onnx.reference"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, inputs)[0]), "onnxruntime"
