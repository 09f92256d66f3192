"""The NAT archive: every architecture evaluated exactly, its scores and costs, on disk as JSON and CSV.

Costs are keyed by objective name in fixed units: `macs` in millions (MMACs, what the SPOS
strategy and the papers call MFLOPs), `params` in millions, `latency` in milliseconds (from a
latency table). The scores are the latest exact evaluation: when the supernet is adapted the
archive is rescored, so every member is measured under the same weights.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dfnas.files import atomic_write_bytes, atomic_write_json
from dfnas.nas.strategies.nat_front import non_dominated

COST_UNITS = {"macs": "MMACs", "params": "M params", "latency": "ms"}


@dataclass(frozen=True)
class Member:
    path: tuple[int, ...]
    agreement: float  # top-1 vs the teacher's argmax (accuracy on real data), after BN recalibration
    kl: float
    costs: dict[str, float]
    iteration: int  # 0: the initial sample
    predicted: float | None = None  # the predictor's agreement when NSGA-II proposed it

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "path": list(self.path)}

    @classmethod
    def from_dict(cls, data: dict) -> "Member":
        return cls(**{**data, "path": tuple(int(k) for k in data["path"]), "costs": dict(data["costs"])})


class Archive:
    """Members in the order they were first evaluated; one per path."""

    def __init__(self, members: Sequence[Member] = ()):
        self.members: list[Member] = list(members)

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, path: tuple[int, ...]) -> bool:
        return any(m.path == path for m in self.members)

    def add(self, member: Member) -> None:
        if member.path in self:
            raise ValueError(f"architecture {list(member.path)} is already in the archive")
        self.members.append(member)

    def rescore(self, index: int, agreement: float, kl: float) -> None:
        self.members[index] = dataclasses.replace(self.members[index], agreement=agreement, kl=kl)

    def paths(self) -> np.ndarray:
        return np.array([m.path for m in self.members], dtype=np.int64)

    def agreements(self) -> np.ndarray:
        return np.array([m.agreement for m in self.members], dtype=float)

    def objectives(self, costs: Sequence[str]) -> np.ndarray:
        """(n, 1 + len(costs)), all minimized: error = 1 - agreement, then the costs."""
        return np.array([[1.0 - m.agreement, *(m.costs[c] for c in costs)] for m in self.members], dtype=float)

    def front(self, costs: Sequence[str]) -> list[int]:
        """Indices of the non-dominated members, ordered by the first cost (then error)."""
        objectives = self.objectives(costs)
        indices = non_dominated(objectives).tolist()
        return sorted(indices, key=lambda i: (objectives[i, 1], objectives[i, 0], self.members[i].path))

    def to_list(self) -> list[dict]:
        return [m.to_dict() for m in self.members]

    @classmethod
    def from_list(cls, data: list[dict]) -> "Archive":
        return cls([Member.from_dict(d) for d in data])

    def write(self, directory: Path, costs: Sequence[str], front_files: dict[int, str]) -> list[Path]:
        """`archive.json` and `archive.csv`: every member, with `front_file` set for the front."""
        rows = [{**m.to_dict(), "front_file": front_files.get(i)} for i, m in enumerate(self.members)]
        json_path, csv_path = directory / "archive.json", directory / "archive.csv"
        atomic_write_json(json_path, {"cost_units": {c: COST_UNITS[c] for c in costs}, "members": rows})
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "agreement", "kl", *costs, "iteration", "predicted", "front_file"])
        for row in rows:
            writer.writerow([" ".join(map(str, row["path"])), row["agreement"], row["kl"],
                             *(row["costs"][c] for c in costs), row["iteration"],
                             "" if row["predicted"] is None else row["predicted"], row["front_file"] or ""])
        atomic_write_bytes(csv_path, buffer.getvalue().encode())
        return [json_path, csv_path]
