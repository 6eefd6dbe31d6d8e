"""Smaller worst-patch cells for objects that enter the frame, judged by the rule in docs/research/events.md
("Smaller patches for objects that enter"), on the fold models' unseen normal footage and pseudo-anomalies (no test
labels):

    python docs/research/scripts/events_patch.py --data ../shared/datasets/ped2 --work W

W holds events_folds.py's fold models (fold-f.pt); each candidate's scores are computed once and cached there.
The shipped timing (half-life 2, 0.4 s) with rule 1's thresholds per direction, recomputed on each candidate's
scores; patch_fraction in CANDIDATES against the models' own 1/8 (the reference).
"""
from __future__ import annotations

import json

from events_folds import choose, fold_directions, grid_args, replay_directions  # this script's folder is on sys.path
from events_timing import SHIPPED_TIMING, rule1

REFERENCE = 0.125
CANDIDATES = (1 / 16, 3 / 32)


def main() -> None:
    a = grid_args(__doc__)
    rows = []
    for fraction in (REFERENCE, *CANDIDATES):
        k, directions = fold_directions(a.data, a.work, a.threads, fraction)
        row = replay_directions(directions, k, lambda cal_x, cal: rule1(cal_x, cal, *SHIPPED_TIMING)[1])
        rows.append({"patch_fraction": fraction, **row})
        print(json.dumps(rows[-1]), flush=True)
    choose(rows, rows[0], lambda r: (round(r["delay_s_median"], 6), -r["patch_fraction"]), a.json)


if __name__ == "__main__":
    main()
