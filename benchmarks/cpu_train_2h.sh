#!/usr/bin/env bash
# A two-hour CPU recipe: one chain of learning-rate cycles on both cores, inside a fixed time box. It made the
# shipped lite model of the seventh and eighth sessions; the shipped one now comes from one cosine run with a
# weight average (`ffp train --lr-schedule cosine --ema 0.999`, commands in weights/HISTORY.md).
#
#   RUNS=runs/chain2h BUDGET_MIN=118 bash benchmarks/cpu_train_2h.sh
#
# Fixed before any result is seen (seventh session): the lite preset, no flow term and no adversarial term
# (the ablation measured neither worth anything here; without the discriminator a step is 1.44x faster),
# two torch threads on one run (2.24x the speed of the earlier one-thread runs with a discriminator: 6.3
# against 2.8 steps/s, measured over 300 steps each on this machine), seed 1, batch 4, lr 2e-4 x0.1 at 75 %
# of each cycle. Cycles: 12000, 12000, 12000, 6000 steps, each started (--init) from the previous cycle's
# best.pt. Each cycle gets the time left of BUDGET_MIN as its --max-minutes, so the whole chain, data
# loading and calibration included, stays inside the box; a cycle the box cuts keeps its best.pt.
# Eighth session: ADV=1 keeps the adversarial term, SEED and CYCLES change the seed and the cycles.
# Writes $RUNS/chain.json: per cycle its folder, steps done, best held-out PSNR and minutes, and the total.
# Run again on the same RUNS, it resumes (ffp train resumes each cycle from its last.pt); the total then
# counts from the restart only, and the budget starts again: add the earlier part by hand.
set -euo pipefail
DATA=${DATA:-../shared/datasets/ped2}
RUNS=${RUNS:-runs/chain2h}
BUDGET_MIN=${BUDGET_MIN:-118}
PY=${PY:-python3}
EXTRA=${EXTRA:-}                # e.g. "--arch base_width=4" for a quick check of this script
CYCLES=${CYCLES:-"12000 12000 12000 6000"}
SEED=${SEED:-1}
ADV=${ADV:-0}                   # 1 keeps the adversarial term (lambda 0.05; a step costs 1.44x as much)
adv=(--no-adv)
if [ "$ADV" = 1 ]; then adv=(); fi
t0=$(date +%s)
mkdir -p "$RUNS"
init=()
i=0
done_runs=()                    # the cycles this call ran, for chain.json
for steps in $CYCLES; do
  i=$((i + 1))
  left=$(( BUDGET_MIN * 60 - ($(date +%s) - t0) ))
  if [ "$left" -lt 120 ]; then echo "budget spent before cycle $i"; break; fi
  # shellcheck disable=SC2086  # EXTRA is a word list
  $PY -m model.cli train --data "$DATA" --preset lite --dataset ped2 --lr-g 2e-4 --lr-d 2e-5 --no-flow "${adv[@]}" \
    --holdout 2 --val-every 1000 --threads 2 --seed "$SEED" --batch-size 4 --steps "$steps" \
    --lr-decay-step $((steps * 3 / 4)) --max-minutes "$(( (left - 60) / 60 ))" --out "$RUNS/c$i" \
    "${init[@]}" $EXTRA >"$RUNS/c$i.log" 2>&1
  init=(--init "$RUNS/c$i/best.pt")
  done_runs+=("$RUNS/c$i")
  echo "cycle $i: $(tr -d '\n ' <"$RUNS/c$i/summary.json")  ($(( ($(date +%s) - t0) / 60 )) min so far)"
done
$PY - "$RUNS" "$t0" "${done_runs[@]}" <<'PY'
import json, sys, time
from pathlib import Path
runs = Path(sys.argv[1])
# the cycles of this call only, in order (a glob would also find a stale c5 of an earlier, longer chain)
cycles = [{"run": d, **json.loads((Path(d) / "summary.json").read_text())} for d in sys.argv[3:]]
total = (time.time() - float(sys.argv[2])) / 60
(runs / "chain.json").write_text(json.dumps({"cycles": cycles, "total_minutes": round(total, 2)}, indent=2))
print(f"chain: {len(cycles)} cycles, {total:.1f} min in all")
PY
