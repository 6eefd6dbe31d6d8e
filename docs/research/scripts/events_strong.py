"""The strong-crossing trigger (`AlertParams.strong_margin`) judged by the rule in docs/research/events.md ("A strong
crossing raises at once"), on the fold models' unseen normal footage and pseudo-anomalies (no test labels):

    python docs/research/scripts/events_strong.py --data ../shared/datasets/ped2 --work W

W holds events_folds.py's fold models (fold-f.pt); the shipped timing (half-life 2, 0.4 s) and rule 1's thresholds
per direction; strong_margin in DELTAS against none (the reference).
"""
from __future__ import annotations

import json
from dataclasses import replace

from events_folds import choose, fold_directions, grid_args, replay_directions  # this script's folder is on sys.path
from events_timing import SHIPPED_TIMING, rule1

DELTAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def main() -> None:
    a = grid_args(__doc__)
    k, directions = fold_directions(a.data, a.work, a.threads)
    rows = []
    for delta in (None, *DELTAS):
        row = replay_directions(directions, k, lambda cal_x, cal, d=delta: replace(
            rule1(cal_x, cal, *SHIPPED_TIMING)[1], strong_margin=d))
        rows.append({"strong_margin": delta, **row})
        print(json.dumps(rows[-1]), flush=True)
    choose(rows, rows[0], lambda r: (round(r["delay_s_median"], 6), -(r["strong_margin"] or float("inf"))), a.json)


if __name__ == "__main__":
    main()
