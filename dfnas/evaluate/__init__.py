"""Retrain a searched architecture from scratch, evaluate it on real data, export it (`dfnas-train`).

- `config.py`: `TrainConfig`, every setting with its default, help and allowed range.
- `sources.py`: `--data DIR|mnist` and `--teacher` -> the training, val and real test sets, the
  online teacher, and the checks that they fit the architecture.
- `retrain.py`: the training loop (optimizer, cosine schedule, loss, per-epoch checkpoints).
- `evaluate.py`: accuracy on real held-out digits, the teacher's accuracy, MACs/params, latency.
- `export.py`: TorchScript and ONNX files, each reloaded and compared with the eager model.
- `plots.py`: the training curve.
- `run.py`: `train_architecture`, the whole command: load, check, train, evaluate, export, report.
"""
