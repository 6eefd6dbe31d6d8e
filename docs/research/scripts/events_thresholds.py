"""A camera's own operating point against a fixed one, on the fold models' unseen normal footage and
pseudo-anomalies (docs/research/events.md, "Per-camera thresholds"; no test labels):

    python docs/research/scripts/events_thresholds.py --data ../shared/datasets/ped2 --work W

Rule 1 per direction (on_threshold from that direction's own calibration videos, as a learnt camera could take it
from its held-out tail) against fixed on_thresholds (the shipped 2.75 and its neighbours), off 1.5 below; the
shipped timing throughout.
"""
from __future__ import annotations

import json
from dataclasses import replace

from events_folds import fold_directions, grid_args, replay_directions  # this script's folder is on sys.path
from events_timing import GAP, SHIPPED_TIMING, rule1

from model import AlertParams

FIXED = (2.5, 2.75, 3.0, 3.5)


def main() -> None:
    a = grid_args(__doc__)
    k, directions = fold_directions(a.data, a.work, a.threads)
    chosen: list[float] = []

    def own(cal_x, cal):  # type: ignore[no-untyped-def]
        params = rule1(cal_x, cal, *SHIPPED_TIMING)[1]
        chosen.append(params.on_threshold)
        return params

    rows = [{"on_threshold": "rule 1 per direction", **replay_directions(directions, k, own), "chosen": chosen}]
    print(json.dumps(rows[-1]), flush=True)
    for on in FIXED:
        fixed = replace(AlertParams(), on_threshold=on, off_threshold=on - GAP)
        rows.append({"on_threshold": on, **replay_directions(directions, k, lambda cal_x, cal, p=fixed: p)})
        print(json.dumps(rows[-1]), flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
