#!/usr/bin/env bash
# Ablation of the loss terms on Ped2, one fixed schedule for every arm: full, without the flow term, without
# the adversarial term. Usage: bash benchmarks/ablation.sh [STEPS] [OUT]   (defaults 1200, runs/ablation)
set -euo pipefail
STEPS=${1:-1200}
OUT=${2:-runs/ablation}
DATA=${DATA:-../shared/datasets/ped2}
DECAY=$((STEPS * 3 / 4))
mkdir -p "$OUT"
for arm in full no-flow no-adv; do
    flags=()
    [ "$arm" = no-flow ] && flags+=(--no-flow)
    [ "$arm" = no-adv ] && flags+=(--no-adv)
    ffp train --data "$DATA" --out "$OUT/$arm" --preset lite --dataset ped2 --steps "$STEPS" --lr-g 2e-4 \
        --lr-d 2e-5 --lr-decay-step "$DECAY" --flownet weights/flownet-lite.pt --holdout 2 --val-every 300 \
        --threads 1 --seed 0 "${flags[@]}"
    ffp eval --data "$DATA" --weights "$OUT/$arm/best.pt" --out "$OUT/$arm/report.json" --no-plots
done
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print(f"{'arm':<8} {'paper_psnr':>10} {'paper_local':>11} {'combined':>9} {'causal':>7}")
for arm in ("full", "no-flow", "no-adv"):
    r = json.loads((out / arm / "report.json").read_text())
    print(f"{arm:<8} {r['auc_paper_psnr']:>10.4f} {r['auc_paper_local']:>11.4f} {r['auc_combined']:>9.4f} {r['auc_causal']:>7.4f}")
PY
