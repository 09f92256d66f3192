"""`--evaluations N` scores N epochs spread over the run and always the last, never more."""
from __future__ import annotations

import json

import pytest

from dfnas.cli.train import main

from train_helpers import save_architecture, write_dataset


@pytest.mark.parametrize("evaluations, evaluated", [(3, [3, 6, 8]), (1, [8]), (100, list(range(1, 9)))])
def test_evaluated_epochs_are_spread_and_include_the_last(tmp_path, evaluations, evaluated):
    """Guards the cadence: off-by-one epochs, a skipped last epoch, or scoring every epoch regardless."""
    data = write_dataset(tmp_path / "data", count=100)  # 90 train images: 3 steps of 30 per epoch
    arch = save_architecture(tmp_path / "arch.json", "spos")
    out = tmp_path / "out"
    assert main([str(arch), "--data", str(data), "--steps", "24", "--batch-size", "30", "--threads", "1",
                 "--evaluations", str(evaluations), "--export", "none", "--latency-runs", "1", "--quiet",
                 "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    history = result["training"]["history"]
    assert len(history) == 8
    assert [r["epoch"] for r in history if "val_agreement" in r] == evaluated
    assert result["synthetic_val_agreement"] == history[-1]["val_agreement"]
