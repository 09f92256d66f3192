"""One supernet search step per strategy (tiny space, batch 64): reference-style vs dfnas, side by side.

- `reference`: what the reference implementations do — a DataLoader over the dataset with
  per-sample crops in Python (`SyntheticDataset`, one persistent iterator), NCHW, float32.
- `dfnas`: the data as uint8 tensors on the device with batched crops (`BatchStream`), and the
  memory format / autocast that `select_precision` measures fastest for this supernet here.

A step is what the search does per batch: DARTS (first order) an architecture step plus a weight
step; SPOS a weight step on a uniformly sampled path; ProxylessNAS a weight step on a sampled path
plus a `full_v2` binary-gate architecture step. DARTS runs on 16x16 crops (every op on every edge
makes 32x32 take seconds per step here), the others on 32x32. Under `--benchmark-disable` the batch
drops to 4 and precision is not measured: the point there is that it runs.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes
from torch.utils.data import DataLoader

from dfnas.data.synthetic import SyntheticDataset
from dfnas.nas.search_data import load_search_data
from dfnas.nas.strategies import STRATEGIES
from dfnas.config import apply
from dfnas.nas.search_run import strategy_config
from dfnas.data.images import Batch, BatchStream
from dfnas.device import Precision
from dfnas.nas.tuning import select_precision

BATCH = 64
QUICK_BATCH = 4
# The strategies with a supernet step of their own (NAT trains SPOS's supernet: its step is timed there).
CROPS = {"darts": 16, "spos": 32, "proxyless": 32}
IMAGES = 256


def write_dataset(root: Path, crop: int, count: int = IMAGES, classes: int = 10) -> Path:
    """A synthetic dataset (docs/synthetic-format.md) of random 3-channel images."""
    generator = torch.Generator().manual_seed(0)
    canvas = crop + crop // 7 + 1
    images = torch.randint(0, 256, (count, 3, canvas, canvas), generator=generator, dtype=torch.uint8)
    data = safetensors_bytes({"images": images, "soft_labels": torch.randn(count, classes, generator=generator),
                              "targets": torch.arange(count) % classes})
    root.mkdir(parents=True, exist_ok=True)
    (root / "shard-00000.safetensors").write_bytes(data)
    (root / "manifest.json").write_text(json.dumps({
        "format": "dfnas-synthetic", "version": 1, "complete": True, "num_images": count,
        "canvas": [3, canvas, canvas], "crop": [crop, crop], "config": {},
        "teacher": {"name": "bench", "sha256": "0" * 64, "num_classes": classes,
                    "class_names": [str(i) for i in range(classes)], "input_size": [crop, crop],
                    "in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3, "flip_ok": True},
        "shards": [{"file": "shard-00000.safetensors", "index": 0, "count": count,
                    "sha256": hashlib.sha256(data).hexdigest()}]}))
    return root


def loader_batches(root: Path, batch: int):
    """The reference data path: per-sample crops and flips, collated by a DataLoader."""
    loader = DataLoader(SyntheticDataset(root, "train"), batch_size=batch, shuffle=True, drop_last=True)
    while True:
        for images, soft in loader:
            yield Batch(images, soft, soft.argmax(1))


def make_step(name: str, search, next_batch):
    """The strategy's per-batch work on batches from `next_batch()`."""
    if name == "darts":
        def step():
            train, arch = next_batch(), next_batch()
            search.architect.step(train, arch)
            search.trainer.step(search.weight_optimizer, search.model, train, list(search.model.weight_parameters()))
    elif name == "spos":
        rng = random.Random(0)
        layers = search.space_config.num_layers

        def step():
            path = [rng.randrange(4) for _ in range(layers)]
            search.trainer.step(search.optimizer, lambda x: search.model(x, path), next_batch())
    else:
        def step():
            search.sample_path()
            search.trainer.step(search.weight_optimizer, search.model, next_batch())
            search.gradient_arch_step(next_batch())
    return step


@pytest.mark.parametrize("implementation", ["reference", "dfnas"])
@pytest.mark.parametrize("name", list(CROPS))
def test_search_step(benchmark, tmp_path_factory, name, implementation):
    torch.manual_seed(0)
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    root = write_dataset(tmp_path_factory.mktemp(name), CROPS[name])
    cpu = torch.device("cpu")
    data = load_search_data(str(root), cpu)
    strategy = STRATEGIES[name][0]
    config = apply(strategy_config(name, "tiny"), {"batch_size": batch, "regularizer": "none"}
                   if name == "proxyless" else {"batch_size": batch}, "benchmark")
    precision, timings = Precision(cpu), {}
    if implementation == "dfnas" and benchmark.enabled:
        probe = strategy(config, data, precision)
        precision, timings = select_precision(cpu, "auto", "auto", probe.model, probe.probe_forward,
                                              data.train.fixed_batches(batch, 1)[0].images)
    search = strategy(config, data, precision)
    if implementation == "reference":
        batches = loader_batches(root, batch)
        next_batch = lambda: next(batches)  # noqa: E731
    else:
        next_batch = BatchStream(data.train, batch, seed=0).next
    step = make_step(name, search, next_batch)
    benchmark.group = f"search step {name} batch {batch} {CROPS[name]}x{CROPS[name]}"
    benchmark.extra_info.update(threads=torch.get_num_threads(), precision=precision.name,
                                measured_step_seconds={k: round(v, 4) for k, v in timings.items()})
    benchmark.pedantic(step, rounds=5 if name != "darts" else 3, iterations=1, warmup_rounds=1)
    params = [p for p in search.model.parameters() if p.grad is not None]
    assert params and all(torch.isfinite(p.grad).all() for p in params)
