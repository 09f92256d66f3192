"""Datasets: the real MNIST digits (`mnist`), synthetic dataset reading (`synthetic`), PNG export."""
from dfnas.data.export import export_png
from dfnas.data.mnist import load_mnist
from dfnas.data.synthetic import SyntheticDataset, SyntheticTensors, load_synthetic, read_manifest, verify_shard

__all__ = ["SyntheticDataset", "SyntheticTensors", "export_png", "load_mnist", "load_synthetic", "read_manifest", "verify_shard"]
