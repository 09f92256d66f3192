#!/usr/bin/env bash
# Data-free vs real-data search (docs/results.md): SPOS and DARTS searched on a synthetic set from the
# bundled teacher and on the real digits; every winner is then retrained on the real digits with the
# same budget and scored on the real held-out split. Prints one table row per (strategy, search data).
# Usage: bash scripts/datafree_vs_real.sh [OUT] [SEED]     (tiny presets; ~10-15 min on 2 idle cores)
set -euo pipefail
out="${1:-datafree-vs-real}"
seed="${2:-0}"
mkdir -p "$out"
[ -f "$out/synth/manifest.json" ] || dfnas-synth --out "$out/synth" --seed "$seed" --quiet
for strategy in spos darts; do
  for data in synth mnist; do
    source="$out/synth"; [ "$data" = mnist ] && source=mnist
    run="$out/search-$strategy-$data"
    [ -f "$run/architecture.json" ] || dfnas-search "$strategy" --data "$source" --out "$run" --seed "$seed" --quiet
    [ -f "$run/retrain/result.json" ] || dfnas-train "$run/architecture.json" --data mnist --out "$run/retrain" \
      --seed "$seed" --export none --quiet
  done
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| strategy | searched on | winner MMACs | params | real test accuracy after retraining |")
print("|---|---|---|---|---|")
for strategy in ("spos", "darts"):
    for data in ("synth", "mnist"):
        r = json.loads((out / f"search-{strategy}-{data}" / "retrain" / "result.json").read_text())
        print(f"| {strategy} | {'synthetic (data-free)' if data == 'synth' else 'real digits'} | "
              f"{r['macs'] / 1e6:.3g} | {r['params'] / 1e3:.1f}k | {r['test_accuracy']:.3f} |")
PY
