"""The alert timing grid replayed on all of Ped2's normal training videos (docs/research/events.md, "More normal
footage for a timing rule"), no test labels:

    python docs/research/scripts/events_normal_footage.py --data ../shared/datasets/ped2 [--weights W] [--json out.json]

Per video: the mean of the weights' calibrated score z and its largest value smoothed at each half-life of the
grid. Per combination of the grid (events_timing.py): rule 1's thresholds from the held-out videos, as there, and
the alerts its settings raise on each of the 16 videos (14 the generator was trained on, 2 held out).
"""
from __future__ import annotations

import itertools
import json

import numpy as np
from events_candidates import cells_of, parse_args  # this script's folder is on sys.path
from events_timing import FPS, HALF_LIVES, MIN_DURATIONS, rule1
from pseudo_anomaly import grey_video

from model.data import find_videos
from model.evaluate import causal_smooth
from model.events import replay
from model.predictor import load_predictor


def main() -> None:
    a = parse_args(__doc__)
    p = load_predictor(a.weights, device="cpu", precision="fp32")
    if p.calibration is None:
        raise SystemExit("the weights carry no calibration: run ffp calibrate first")
    k, cal = p.num_frames, p.calibration
    holdout = list(p.meta.get("holdout_videos") or [])
    anomaly = {s.name: cells_of(p, grey_video(s))[0].max(1) for s in find_videos(a.data, "training")}  # worst patch
    videos = [{"video": n, "held_out": n in holdout, "frames": len(x), "mean_z": round(float(cal.z(x).mean()), 2),
               **{f"max_smoothed_z_hl{hl:g}": round(float(causal_smooth(cal.z(x), hl).max()), 2)
                  for hl in HALF_LIVES}} for n, x in anomaly.items()]
    for v in videos:
        print(json.dumps(v))
    rows = []
    for hl, md in itertools.product(HALF_LIVES, MIN_DURATIONS):
        _, params = rule1({n: anomaly[n] for n in holdout}, cal, hl, md)
        alerts = {n: len(replay(np.r_[np.full(k, np.nan), x], k, cal, params, FPS)) for n, x in anomaly.items()}
        rows.append({"half_life": hl, "min_duration_s": md, "on_threshold": params.on_threshold,
                     "alerts": sum(alerts.values()), "videos_alerted": [n for n, c in alerts.items() if c]})
        print(json.dumps(rows[-1]))
    if a.json:
        a.json.write_text(json.dumps({"holdout": holdout, "videos": videos, "grid": rows}, indent=2))


if __name__ == "__main__":
    main()
