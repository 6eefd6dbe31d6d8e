"""The alert timing grid judged on unseen normal footage and entering pseudo-anomalies (docs/research/events.md,
"Unseen normal footage by cross-validation"), no test labels:

    python docs/research/scripts/events_folds.py --data ../shared/datasets/ped2 --work W [--train-minutes 15]

Fold f (1..4) holds out Ped2 training videos {f, f+4, f+8, f+12}; its model is learnt by `ffp learn` from the
other twelve (camera-lite, --train-minutes, one thread, two folds at a time) into W/fold-f.pt, unless that file
is there. Each fold's held-out videos form two pairs: in each direction one pair calibrates (worst-patch anomaly
mean and std, rule 1's thresholds per combination) and the other is replayed, clean and with pasted objects that
`appear` (whole, at the border) or `enter` (slide in from outside the frame). Then the rule picks a combination.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from events_candidates import cells_of  # this script's folder is on sys.path
from events_timing import FPS, HALF_LIVES, MIN_DURATIONS, SHIPPED_TIMING, calibration_of, rule1
from pseudo_anomaly import grey_video, moving_object, paste

from model import AlertParams, Calibration
from model.data import find_videos
from model.events import evaluate_events
from model.predictor import load_predictor

ROOT = Path(__file__).resolve().parents[3]
SPEEDS = (1.5, 2.5, 3.5)
STYLES = ("appear", "enter")


def fold_videos(f: int) -> list[str]:
    return [f"{f + 4 * i:02d}" for i in range(4)]


def train_folds(data: Path, work: Path, minutes: float) -> None:
    """The fold models not in `work` yet, two at a time (one torch thread each)."""
    names = sorted(s.name for s in find_videos(data, "training"))
    todo = [f for f in range(1, 5) if not (work / f"fold-{f}.pt").is_file()]
    for pair in (todo[i:i + 2] for i in range(0, len(todo), 2)):
        procs = []
        for f in pair:
            src = work / f"fold-{f}-videos"
            src.mkdir(parents=True, exist_ok=True)
            for n in names:
                if n not in fold_videos(f) and not (src / n).exists():
                    (src / n).symlink_to((data / "training" / "frames" / n).resolve())
            cmd = [sys.executable, "-m", "model.cli", "learn", str(src), "--footage-minutes", "10",
                   "--train-minutes", str(minutes), "--threads", "1", "--out", str(work / f"fold-{f}.pt"),
                   "--work", str(work / f"run-{f}")]
            log = open(work / f"fold-{f}.log", "w")  # noqa: SIM115 - closed with its process below
            procs.append((subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
        for proc, log in procs:
            if proc.wait() != 0:
                raise SystemExit(f"ffp learn failed: see {log.name}")
            log.close()


def fold_material(p, data: Path, f: int) -> dict:  # type: ignore[no-untyped-def]
    """One fold model's worst-patch anomaly on its held-out videos, clean and with each pasted object."""
    sources = {s.name: s for s in find_videos(data, "training")}
    held = fold_videos(f)
    donor_name = min(n for n in sources if n not in held)
    patch, alpha, row = moving_object(grey_video(sources[donor_name]))
    clean, pasted = {}, {}
    for n in held:
        video = grey_video(sources[n])
        clean[n] = cells_of(p, video)[0].max(1)
        for (i, speed), leftwards, style in itertools.product(enumerate(SPEEDS), (False, True), STYLES):
            r = int(np.clip(row + (i - len(SPEEDS) // 2) * 20, 0, video.shape[1] - patch.shape[0]))
            v, lab = paste(video, patch, alpha, r, speed, len(video) // 2, leftwards, style)
            pasted[f"{n}-{style}-{speed:g}-{'l' if leftwards else 'r'}"] = (cells_of(p, v)[0].max(1), lab, n, style)
    return {"clean": clean, "pasted": pasted}


Direction = tuple[dict, dict, dict]  # (calibration anomaly by video, replayed clean by video, pasted by name)


def fold_directions(data: Path, work: Path, threads: int, patch_fraction: float | None = None
                    ) -> tuple[int, list[Direction]]:
    """Each fold's eight calibrate/replay directions; the fold material is cached in work/material-f-SHA.pkl, SHA
    the fold model's (material-f-SHA-patch-FRACTION.pkl with another `patch_fraction` than the model's own)."""
    torch.set_num_threads(threads)
    k = 0
    directions: list[Direction] = []
    for f in range(1, 5):
        weights = work / f"fold-{f}.pt"
        p = load_predictor(weights, device="cpu", precision="fp32")
        cache = work / f"material-{f}-{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}.pkl"
        if patch_fraction is not None and patch_fraction != p.score_config.patch_fraction:
            p = replace(p, score_config=replace(p.score_config, patch_fraction=patch_fraction))
            cache = cache.with_name(f"{cache.stem}-patch-{patch_fraction:g}.pkl")
        k = p.num_frames
        if cache.is_file():
            m = pickle.loads(cache.read_bytes())
        else:
            m = fold_material(p, data, f)
            cache.write_bytes(pickle.dumps(m))
        held = fold_videos(f)
        for cal_pair, replay_pair in ((held[:2], held[2:]), (held[2:], held[:2])):
            directions.append(({n: m["clean"][n] for n in cal_pair}, {n: m["clean"][n] for n in replay_pair},
                               {name: v for name, v in m["pasted"].items() if v[2] in replay_pair}))
        print(json.dumps({"fold": f, "held_out": held, "frames": int(sum(len(x) for x in m["clean"].values()))}),
              flush=True)
    return k, directions


def replay_directions(directions: list[Direction], k: int, params_of: Callable[[dict, Calibration], AlertParams]
                      ) -> dict:
    """Alerts on the unseen normal videos and the pasted ones, summed over the directions; `params_of` gives the
    alert settings from a direction's calibration videos and their calibration."""
    def pad(x: np.ndarray) -> np.ndarray:  # the first k frames are unscored
        return np.r_[np.full(k, np.nan), x]

    normal_alerts = pasted_fa = 0
    delays: dict[str, list[float]] = {s: [] for s in STYLES}
    alerted = {s: 0 for s in STYLES}
    episodes = {s: 0 for s in STYLES}
    for cal_x, clean_x, pasted_x in directions:
        cal = calibration_of(cal_x)
        params = params_of(cal_x, cal)
        normal = evaluate_events({n: pad(x) for n, x in clean_x.items()},
                                 {n: np.zeros(len(x) + k, bool) for n, x in clean_x.items()}, k, cal, params, FPS)
        normal_alerts += normal["false_alarms"]
        for style in STYLES:
            sel = {n: v for n, v in pasted_x.items() if v[3] == style}
            pseudo = evaluate_events({n: pad(v[0]) for n, v in sel.items()}, {n: v[1] for n, v in sel.items()},
                                     k, cal, params, FPS)
            pasted_fa += pseudo["false_alarms"]
            episodes[style] += pseudo["episodes"]
            alerted[style] += pseudo["episodes_alerted"]
            delays[style] += [d["delay_s"] for d in pseudo["episode_detail"] if d["alerted"]]
    every = delays["appear"] + delays["enter"]
    return {"normal_alerts": normal_alerts, "pseudo_episodes": sum(episodes.values()),
            "pseudo_alerted": sum(alerted.values()), "alerted_by_style": alerted, "pasted_false_alarms": pasted_fa,
            "delay_s_median": float(np.median(every)) if every else None,
            "delay_s_median_by_style": {s: float(np.median(d)) if d else None for s, d in delays.items()}}


def passes(row: dict, ref: dict) -> bool:
    """The rule's constraints a-c against the reference on the same material."""
    return (row["normal_alerts"] <= ref["normal_alerts"] and row["pseudo_alerted"] >= ref["pseudo_alerted"]
            and row["pasted_false_alarms"] <= ref["pasted_false_alarms"] and row["delay_s_median"] is not None)


def grid_args(doc: str) -> argparse.Namespace:
    """The command line of a grid on the fold material (events_strong.py, events_patch.py)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    return ap.parse_args()


def choose(rows: list[dict], ref: dict, order: Callable[[dict], tuple], out: Path | None) -> dict:
    """The rule's pick: the rows that pass against the reference, the first by `order` (the lowest median delay,
    then the tie-break); printed, and written to `out` with every row."""
    for r in rows:
        r["passes"] = passes(r, ref)
    pick = min((r for r in rows if r["passes"]), key=order)
    print(json.dumps({"reference": ref, "pick": pick}), flush=True)
    if out:
        out.write_text(json.dumps({"rows": rows, "pick": pick}, indent=2))
    return pick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--train-minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    train_folds(a.data, a.work, a.train_minutes)
    k, directions = fold_directions(a.data, a.work, a.threads)
    rows = []
    for hl, md in itertools.product(HALF_LIVES, MIN_DURATIONS):
        row = replay_directions(directions, k, lambda cal_x, cal, h=hl, m=md: rule1(cal_x, cal, h, m)[1])
        rows.append({"half_life": hl, "min_duration_s": md, **row})
        print(json.dumps(rows[-1]), flush=True)
    ref = next(r for r in rows if (r["half_life"], r["min_duration_s"]) == SHIPPED_TIMING)
    choose(rows, ref, lambda r: (round(r["delay_s_median"], 6), -r["min_duration_s"], -r["half_life"]), a.json)


if __name__ == "__main__":
    main()
