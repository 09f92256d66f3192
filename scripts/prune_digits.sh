#!/usr/bin/env bash
# Data-free pruning of the bundled digit teacher (docs/results.md, "Data-free pruning"): at 50 % and
# 25 % of its MACs, the searched pruning (candidates scored on synthetic images) and the uniform
# pruning at the same budget, both distilled on the synthetic set only, then the same search guided
# by the real digits' train split. Every network is scored on the real held-out digits.
# Usage: bash scripts/prune_digits.sh [OUT] [SEED] [SYNTH_DIR]     (~10 min per budget on 2 idle cores)
set -euo pipefail
out="${1:-prune-digits}"
seed="${2:-0}"
synth="${3:-$out/synth}"
mkdir -p "$out"
[ -f "$synth/manifest.json" ] || dfnas-synth --out "$synth" --seed "$seed" --quiet
for ratio in 0.5 0.25; do
  [ -f "$out/data-free-$ratio/result.json" ] || dfnas-prune --data "$synth" --ratio "$ratio" --seed "$seed" \
    --threads 1 --out "$out/data-free-$ratio" --quiet
  [ -f "$out/real-guided-$ratio/result.json" ] || dfnas-prune --data "$synth" --ratio "$ratio" --seed "$seed" \
    --guide mnist --no-baseline --threads 1 --out "$out/real-guided-$ratio" --quiet
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| MACs budget | pruning | MMACs | params | real test accuracy | teacher |")
print("|---|---|---|---|---|---|")
for ratio in ("0.5", "0.25"):
    free = json.loads((out / f"data-free-{ratio}" / "result.json").read_text())
    real = json.loads((out / f"real-guided-{ratio}" / "result.json").read_text())
    rows = [("searched, data-free", free["networks"]["searched"]), ("uniform", free["networks"]["uniform"]),
            ("searched, real-data guided", real["networks"]["searched"])]
    for name, n in rows:
        print(f"| {float(ratio):.0%} | {name} | {n['macs'] / 1e6:.3g} | {n['params'] / 1e3:.1f}k | "
              f"{n['test_accuracy']:.3f} | {free['teacher']['test_accuracy']:.3f} |")
PY
