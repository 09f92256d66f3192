"""The teacher-training script of tools/ (not part of the installed package), imported from the repository."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "train_default_teacher.py"


def load_training_tool():
    spec = importlib.util.spec_from_file_location("train_default_teacher", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
