"""The per-machine cache of measured precision/thread choices: where it lives, what its key
depends on, that a damaged file is only a miss, and that a second search skips the timing runs."""
from __future__ import annotations

import json

import torch

from dfnas.device import Precision
from dfnas.nas import search_run
from dfnas.nas.search_run import RunOptions, search, strategy_config
from dfnas.nas.tuning_cache import cache_path, load_choice, store_choice, tuning_key

from test_search_data import write_tiny_dataset

CPU = torch.device("cpu")


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    assert cache_path() == tmp_path / "dfnas-cache" / "tuning.json"  # tests/conftest.py
    monkeypatch.delenv("DFNAS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path() == tmp_path / "xdg" / "dfnas" / "tuning.json"


def test_round_trip_key_and_damaged_file():
    key = tuning_key(CPU, strategy="darts", batch_size=64)
    assert key == tuning_key(CPU, batch_size=64, strategy="darts")
    assert key != tuning_key(CPU, strategy="darts", batch_size=32)
    assert load_choice(key) is None
    store_choice(key, {"threads": 1})
    store_choice("other", {"threads": 2})
    assert load_choice(key) == {"threads": 1}
    cache_path().write_text("{not json")
    assert load_choice(key) is None
    store_choice(key, {"threads": 3})
    assert load_choice(key) == {"threads": 3}


def test_second_search_reuses_the_measured_choice(tmp_path, monkeypatch):
    root = write_tiny_dataset(tmp_path / "ds", count=40, num_classes=4)
    config = strategy_config("spos")
    config.epochs, config.batch_size = 1, 8
    calls = []

    def fake_select(device, channels_last, amp, *args):
        calls.append(channels_last)
        return Precision(device, channels_last=True), {"fake": 1.0}

    monkeypatch.setattr(search_run, "select_precision", fake_select)
    options = RunOptions(threads="1", stop_after=1)
    lines: list[str] = []
    first = search("spos", config, str(root), tmp_path / "a", options, progress_bar=False, echo=lines.append)
    second = search("spos", config, str(root), tmp_path / "b", options, progress_bar=False, echo=lines.append)
    assert len(calls) == 1
    assert any("measured before" in line for line in lines)
    saved = [json.loads((tmp_path / d / "config.json").read_text()) for d in "ab"]
    assert saved[0]["precision"] == saved[1]["precision"] == {"channels_last": True, "amp": "off"}
    assert first.next_unit == second.next_unit
    search("spos", config, str(root), tmp_path / "c", RunOptions(threads="1", amp="off", stop_after=1),
           progress_bar=False, echo=lines.append)
    assert len(calls) == 2  # another setting: measured again
