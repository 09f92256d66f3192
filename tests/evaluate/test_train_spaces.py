"""Every search space's network trains, is measured and exports files that reload to the same outputs."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from safetensors.torch import load_file

from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.run import train_architecture
from dfnas.nas.arch import Architecture
from dfnas.nas.search_data import load_search_data

from train_helpers import SPACES, save_architecture, write_dataset


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("space", SPACES)
def test_train_and_export_each_space(space, tmp_path):
    """Guards against (among others): a wrong synthetic val agreement (other split, other labels,
    weights before the last step)."""
    data = write_dataset(tmp_path / "data")
    arch_path = save_architecture(tmp_path / "arch.json", space)
    out = tmp_path / "out"
    config = TrainConfig(data=str(data), steps=8, batch_size=16, latency_runs=2)
    outcome = train_architecture(arch_path, config, out, echo=lambda _: None)

    result = json.loads((out / "result.json").read_text())
    assert outcome.ok and result["status"] == "ok"
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.pt", "model.onnx", "result.json",
                                                "training_curve.png", "checkpoint.pt", "architecture.json"}
    assert not list(out.glob(".*.tmp"))
    arch = Architecture.load(out / "architecture.json")
    assert arch == Architecture.load(arch_path)
    assert (result["macs"], result["params"]) == (arch.derived["flops"], arch.derived["params"])
    assert result["test_accuracy"] is None and "not the 10 MNIST digits" in result["test_note"]
    assert result["training"]["steps"] == 8 and result["latency_ms"] > 0
    assert result["data"]["sha256_of"] == "manifest.json" and result["loss"]["kind"] == "kl_soft_labels"
    assert result["export"]["torchscript"]["method"] == ("trace" if space == "darts" else "script")

    # Independently of the command's own check: reload every file and compare with the eager network.
    model = arch.build().eval()
    model.load_state_dict(load_file(out / "model.safetensors"))
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.load(str(out / "model.pt"))(x)
    onnx_out = ReferenceEvaluator(onnx.load(str(out / "model.onnx"))).run(None, {"images": x.numpy()})[0]
    torch.testing.assert_close(scripted, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.from_numpy(onnx_out), expected, atol=1e-4, rtol=0)
    # The val agreement is the saved network's top-1 agreement with the stored teacher labels on the
    # held-out split, counted here (formerly only `0 <= agreement <= 1`, which cannot fail).
    val = load_search_data(str(data), torch.device("cpu"), config.val_fraction).val
    with torch.no_grad():
        agreeing = sum(int((model(b.images).argmax(1) == b.soft_labels.argmax(1)).sum()) for b in val.fixed_batches(7))
    assert len(val) > 0 and result["synthetic_val_agreement"] == agreeing / len(val)
    for name in ("torchscript", "onnx"):
        assert result["export"][name]["ok"] and result["export"][name]["max_abs_diff"] <= 1e-4
