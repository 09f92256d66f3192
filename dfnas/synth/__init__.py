"""Data-free image synthesis from a frozen BatchNorm teacher (see docs/synthesis.md).

`Synthesizer` makes shards in memory; `synthesize_dataset` writes a dataset directory
(docs/synthetic-format.md) and is what `dfnas-synth` runs.
"""
from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import NonFiniteLossError, Progress, ShardImages, Synthesizer
from dfnas.synth.run import RunResult, synthesize_dataset

__all__ = ["NonFiniteLossError", "Progress", "RunResult", "ShardImages", "SynthConfig", "Synthesizer",
           "synthesize_dataset"]
