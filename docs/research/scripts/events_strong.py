"""The strong-crossing trigger (`AlertParams.strong_margin`) judged by the rule in docs/research/events.md ("A strong
crossing raises at once"), on the fold models' unseen normal footage and pseudo-anomalies (no test labels):

    python docs/research/scripts/events_strong.py --data ../shared/datasets/ped2 --work W

W holds events_folds.py's fold models (fold-f.pt); the shipped timing (half-life 2, 0.4 s) and rule 1's thresholds
per direction; strong_margin in DELTAS against none (the reference).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from events_folds import fold_directions, passes, replay_directions  # this script's folder is on sys.path
from events_timing import SHIPPED_TIMING, rule1

DELTAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    k, directions = fold_directions(a.data, a.work, a.threads)
    rows = []
    for delta in (None, *DELTAS):
        row = replay_directions(directions, k, lambda cal_x, cal, d=delta: replace(
            rule1(cal_x, cal, *SHIPPED_TIMING)[1], strong_margin=d))
        rows.append({"strong_margin": delta, **row})
        print(json.dumps(rows[-1]), flush=True)
    ref = rows[0]
    for r in rows:
        r["passes"] = passes(r, ref)
    pick = min((r for r in rows if r["passes"]),
               key=lambda r: (round(r["delay_s_median"], 6), -(r["strong_margin"] or float("inf"))))
    print(json.dumps({"reference": ref, "pick": pick}), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "pick": pick}, indent=2))


if __name__ == "__main__":
    main()
