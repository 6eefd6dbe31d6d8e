"""The location-aware score's candidates (docs/research/events.md) judged by the rule written there, on held-out
normal video and pseudo-anomalies only (no test labels):

    python docs/research/scripts/events_candidates.py --data ../shared/datasets/ped2 [--weights W] [--json out.json]

Per candidate: cell statistics and the calibration from the clean held-out videos; on_threshold = the largest
smoothed calibrated score on them + 0.5, off_threshold 1.5 below; the pseudo-anomaly videos (pseudo_anomaly.py's
pasted pedestrian, 3 speeds x 2 directions per held-out video) replayed through the alert engine at 10 fps.

Then, out of sample on normal footage only: each held-out video scored with the cell statistics, calibration and
operating point of the other one (leave one video out): its false alarms, the share of its frames inside an alert
and its largest smoothed z. Inside the held-out footage the first part is in-sample by construction (zero false
alarms for every candidate); this part says whether a candidate's statistics carry to normal video they did not
see (docs/research/events.md).
"""
from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from pseudo_anomaly import variants  # this script's folder is on sys.path

from model import AlertParams, Calibration
from model.clip import windows_from_frames
from model.config import ANOMALY_KINDS
from model.data import preprocess_frame
from model.evaluate import causal_smooth
from model.events import evaluate_events, replay
from model.predictor import load_predictor
from model.scoring import cell_anomaly, cell_statistics

MARGIN, GAP, FPS = 0.5, 1.5, 10.0
# The engine timing the candidates were compared under (events.md; the defaults of that time)
TIMING = AlertParams(min_duration_s=0.4, smoothing_half_life_frames=2.0)


def cells_of(p, video: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    pre = np.stack([preprocess_frame(f, p.config) for f in video])
    windows = [w for _, w in windows_from_frames(pre, p.config) if w is not None]
    parts = [p.score(np.stack(windows[i:i + batch])) for i in range(0, len(windows), batch)]
    return np.concatenate([s.cell_error for s in parts]), np.concatenate([s.cell_speed for s in parts])


def operating_point(kind: str, cells: dict[str, tuple[np.ndarray, np.ndarray]], k: int
                    ) -> tuple[dict[str, np.ndarray], Calibration, AlertParams]:
    """Rule 1 of docs/research/events.md on the given normal videos' cells: statistics, calibration, thresholds."""
    stats = cell_statistics(np.concatenate([c[0] for c in cells.values()]),
                            np.concatenate([c[1] for c in cells.values()]))
    arrays = {key: np.asarray(v, np.float32) for key, v in stats.items()}
    anomaly = {n: cell_anomaly(e, s, arrays, kind) for n, (e, s) in cells.items()}
    flat = np.concatenate(list(anomaly.values()))
    cal = Calibration(mean={"anomaly": float(flat.mean())}, std={"anomaly": float(flat.std()) + 1e-8}, quantiles={},
                      frames=len(flat), source="held-out")
    top = max(float(causal_smooth(cal.z(x), TIMING.smoothing_half_life_frames).max()) for x in anomaly.values())
    return arrays, cal, replace(TIMING, on_threshold=top + MARGIN, off_threshold=top + MARGIN - GAP)


def parse_args(doc: str) -> argparse.Namespace:
    """The options this script and events_timing.py share; sets torch's threads."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--speeds", default="1.5,2.5,3.5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    return a


def main() -> None:
    a = parse_args(__doc__)
    p = load_predictor(a.weights, device="cpu", precision="fp32").with_calibration(None)
    k = p.num_frames
    holdout = list(p.meta.get("holdout_videos") or [])
    clean, pasted = variants(a.data, holdout, tuple(float(v) for v in a.speeds.split(",")))
    clean_cells = {n: cells_of(p, v) for n, v in clean.items()}
    pasted_cells = [(f"{n}-{i}", cells_of(p, v), lab) for i, (n, v, lab) in enumerate(pasted)]
    def pad(x: np.ndarray) -> np.ndarray:  # the first k frames are unscored
        return np.r_[np.full(k, np.nan), x]

    rows, loo = [], []
    for kind in ANOMALY_KINDS:
        arrays, cal, params = operating_point(kind, clean_cells, k)
        clean_anomaly = {n: cell_anomaly(e, s, arrays, kind) for n, (e, s) in clean_cells.items()}
        normal = evaluate_events({n: pad(x) for n, x in clean_anomaly.items()},
                                 {n: np.zeros(len(x) + k, bool) for n, x in clean_anomaly.items()}, k, cal, params, FPS)
        pseudo = evaluate_events({n: pad(cell_anomaly(e, s, arrays, kind)) for n, (e, s), _ in pasted_cells},
                                 {n: lab for n, _, lab in pasted_cells}, k, cal, params, FPS)
        rows.append({"kind": kind, "on_threshold": params.on_threshold, "normal_false_alarms": normal["false_alarms"],
                     **{key: pseudo[key] for key in ("episodes", "episodes_alerted", "false_alarms",
                                                     "delay_s_median", "delay_s_max")}})
        print(json.dumps(rows[-1]))
        for seen, unseen in itertools.permutations(clean_cells, 2):
            arrays, cal, params = operating_point(kind, {seen: clean_cells[seen]}, k)
            x = cell_anomaly(*clean_cells[unseen], arrays, kind)
            alerts = replay(pad(x), k, cal, params, FPS)
            in_alert = sum(round((al.end_s - al.start_s) * FPS) + 1 for al in alerts) / len(x)
            loo.append({"kind": kind, "stats_from": seen, "scored": unseen, "on_threshold": params.on_threshold,
                        "false_alarms": len(alerts), "share_in_alert": round(in_alert, 3),
                        "max_smoothed_z": float(causal_smooth(cal.z(x), TIMING.smoothing_half_life_frames).max())})
            print(json.dumps(loo[-1]))
    if a.json:
        a.json.write_text(json.dumps({"holdout": holdout, "speeds": a.speeds, "rows": rows, "leave_one_out": loo},
                                        indent=2))


if __name__ == "__main__":
    main()
