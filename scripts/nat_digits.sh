#!/usr/bin/env bash
# Data-free NAT vs NAT on the real digits (docs/results.md, "NAT"): `dfnas-search nat` (tiny preset)
# on a synthetic set of the bundled teacher and on the real digits; the cheapest, the middle and the
# dearest member of each front are retrained from scratch on the real digits (dfnas-train defaults)
# and scored on the real held-out split. Prints the table and each run's hypervolume per iteration.
# SPACE (spos or proxyless) is NAT's --space.
# Usage: bash scripts/nat_digits.sh [OUT] [SEED] [SYNTH_DIR] [SPACE]
#        (~10 min on 2 idle cores for spos, ~25 min for proxyless)
set -euo pipefail
out="${1:-nat-digits}"
seed="${2:-0}"
synth="${3:-$out/synth}"
space="${4:-spos}"
mkdir -p "$out"
[ -f "$synth/manifest.json" ] || dfnas-synth --out "$synth" --seed "$seed" --quiet
for data in synth mnist; do
  source="$synth"; [ "$data" = mnist ] && source=mnist
  run="$out/nat-$data"
  [ -f "$run/architecture.json" ] || dfnas-search nat --space "$space" --data "$source" --out "$run" --seed "$seed" --threads 1 \
    --quiet
  members=("$run"/front/*.json)
  count=${#members[@]}
  for index in 0 $((count / 2)) $((count - 1)); do
    member="${members[$index]}"
    name=$(basename "$member" .json)
    [ -f "$run/retrain-$name/result.json" ] || dfnas-train "$member" --data mnist --out "$run/retrain-$name" \
      --seed "$seed" --threads 1 --export none --quiet
  done
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| searched on | front member | MMACs | params | search score | real test accuracy after retraining |")
print("|---|---|---|---|---|---|")
for data in ("synth", "mnist"):
    run = out / f"nat-{data}"
    scores = {m["front_file"]: m for m in json.loads((run / "archive.json").read_text())["members"] if m.get("front_file")}
    for retrain in sorted(run.glob("retrain-*/result.json")):
        member = retrain.parent.name.removeprefix("retrain-")
        entry = scores[f"front/{member}.json"]
        score = entry["agreement"]  # accuracy on real data, agreement with the teacher on synthetic
        r = json.loads(retrain.read_text())
        print(f"| {'synthetic (data-free)' if data == 'synth' else 'real digits'} | {member} | {r['macs'] / 1e6:.3g} | "
              f"{r['params'] / 1e3:.1f}k | {score:.3f} | {r['test_accuracy']:.3f} |")
for data in ("synth", "mnist"):
    history = json.loads((out / f"nat-{data}" / "hypervolume.json").read_text())["history"]
    print(data, "hypervolume per iteration:", ", ".join(f"{h['hypervolume']:.3f}" for h in history),
          "| predictor tau:", ", ".join("-" if h["predictor_tau"] is None else f"{h['predictor_tau']:.2f}" for h in history))
PY
