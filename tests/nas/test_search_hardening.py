"""`dfnas-search` at its edges: non-finite values and losses, busy or wrong outputs, resume hints."""
from __future__ import annotations

import hashlib
import json
import re
import shlex

import pytest
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as safetensors_bytes

from dfnas.cli.search import main, resume_command
from dfnas.files import exclusive_directory

from test_search_data import write_tiny_dataset

FAST = ["--channels-last", "off", "--amp", "off", "--threads", "1", "--quiet", "--batch-size", "8"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("dfnas-search: error:") and "Traceback" not in err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "lr must be a finite number"),
    (["--temperature", "inf"], "temperature must be a finite number"),
    (["--stop-after", "-1"], "stop_after must be >= 1"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--threads", "two"], "threads must be a positive number"),
    (["--calib-batches", "0"], "calib_batches must be >= 1"),
    (["--evolution-mutation-prob", "1.5"], "evolution.mutation_prob must be <= 1"),
])
def test_non_finite_and_out_of_range_settings_are_refused(tmp_path, capsys, flags, message):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    code, _, err = _run(capsys, ["spos", "--data", str(root), "--out", str(tmp_path / "run"), *FAST, *flags])
    assert code == 2 and message in _one_line(err)
    assert not (tmp_path / "run").exists()


def test_soft_labels_with_nan_and_valid_checksums_are_refused(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    shard = root / "shard-00000.safetensors"
    tensors = load_safetensors_bytes(shard.read_bytes())
    tensors["soft_labels"][3, 1] = float("nan")
    data = safetensors_bytes(tensors)
    shard.write_bytes(data)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = hashlib.sha256(data).hexdigest()  # the checksum is right: only the values are bad
    (root / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _run(capsys, ["darts", "--data", str(root), "--out", str(tmp_path / "run"), *FAST])
    assert code == 2 and "NaN" in _one_line(err)
    assert not (tmp_path / "run").exists()


def test_a_diverging_search_stops_with_exit_1_and_no_architecture(tmp_path, capsys):
    """Guards against: a failed (diverged) search exiting 0 or 2 instead of 1."""
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    out = tmp_path / "run"
    code, _, err = _run(capsys, ["spos", "--data", str(root), "--out", str(out), *FAST, "--lr", "1e30",
                                 "--grad-clip", "0", "--epochs", "2"])
    # (Formerly `code == 1 and A or B`: with "loss became" in the message any exit code passed.)
    message = _one_line(err)
    assert code == 1 and ("non-finite" in message or "loss became" in message)
    assert "spos unit 1" in err or "spos unit 2" in err  # names where it happened
    assert not (out / "architecture.json").exists()


def test_missing_data_is_reported_before_an_existing_output(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = _run(capsys, ["spos", "--data", str(tmp_path / "missing"), "--out", str(out), *FAST])
    assert code == 2 and "missing does not exist" in _one_line(err)


def test_an_output_that_is_a_file_or_busy_is_refused(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    (tmp_path / "file").write_text("")
    code, _, err = _run(capsys, ["spos", "--data", str(root), "--out", str(tmp_path / "file"), *FAST])
    assert code == 2 and "not a directory" in _one_line(err)
    with exclusive_directory(tmp_path / "busy"):
        code, _, err = _run(capsys, ["spos", "--data", str(root), "--out", str(tmp_path / "busy"), *FAST])
    assert code == 2 and "in use by another dfnas run" in _one_line(err)


def test_resume_from_a_checkpoint_without_run_config_is_one_line(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"strategy": {}}, out / "checkpoint.pt")
    code, _, err = _run(capsys, ["spos", "--data", str(root), "--out", str(out), *FAST, "--resume"])
    assert code == 2 and "not a dfnas-search checkpoint" in _one_line(err)


def test_the_printed_resume_command_continues_the_run(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    argv = ["spos", "--data", str(root), "--out", str(tmp_path / "run"), *FAST, "--epochs", "2",
            "--stop-after", "1"]
    code, out, _ = _run(capsys, argv)
    assert code == 0
    hint = out.strip().splitlines()[-1].split("continue with: ")[1]
    assert hint == resume_command(argv) and "--data" in hint and "--stop-after" not in hint
    command = shlex.split(hint)
    assert command[0] == "dfnas-search"
    code, out, _ = _run(capsys, command[1:])
    assert code == 0 and (tmp_path / "run" / "architecture.json").exists()
    final = out.strip().splitlines()[-1]  # says what was found and how good it is, in one metric name
    assert final.startswith("dfnas-search: spos winner -> ") and re.search(r"val agreement [01]\.\d{3}; ", final)


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must be a JSON object"),
    ('{"format": "dfnas-cost-table"', "not readable JSON"),
    (None, "lacks"),
    ("slots-bad", "malformed"),
])
def test_bad_latency_tables_name_the_file(tmp_path, capsys, content, message):
    from dfnas.nas.profile import CostTable, build_latency_table
    from dfnas.nas.spaces.proxyless import ProxylessConfig

    table = build_latency_table("proxyless", ProxylessConfig.tiny(1, 8, 4), repeats=1, warmup=0)
    good = table.to_dict()
    path = tmp_path / "latency.json"
    if content is None:
        del good["slots"]
        content = json.dumps(good)
    elif content == "slots-bad":
        good["slots"][0]["candidates"] = [1.0, 2.0]
        content = json.dumps(good)
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        CostTable.load(path)
    assert str(path) in str(error.value)
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    code, _, err = _run(capsys, ["proxyless", "--data", str(root), "--out", str(tmp_path / "run"), *FAST,
                                 "--hw-metric", "latency", "--latency-table", str(path)])
    assert code == 2 and str(path) in _one_line(err)
