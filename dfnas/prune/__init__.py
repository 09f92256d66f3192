"""Data-free channel pruning: make the teacher itself smaller with only its synthetic data."""
