"""How much of the frame PSNR's frame-to-frame noise follows the video codec's key-frame rhythm?

    python benchmarks/gop_phase.py reports/ped2-lite_frames.csv [--periods 6,8,10,11,12,13,14,24]

Ped2's frames went through a codec with a key frame every 12 frames (benchmarks/frame_drops.py sees the
rhythm), so a target frame's compression noise depends on its place in that group. Reads the per-frame CSV that
`ffp eval` writes, removes each video's slow trend (a 13-frame moving average) from the PSNR, and prints, for
each period P, the share of the remaining variance explained by the frame index mod P (averaged over the videos),
next to the share that shuffled phases explain. A period the codec imposes stands out from its neighbours.

It then prints `auc_paper_psnr` after subtracting each video's mean residual per phase: a diagnosis that fits
12 numbers per test video on the test videos themselves (no labels, but transductive), so only the difference
between P = 12 and its neighbours means anything: fitting any P free numbers removes some noise.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.evaluate import minmax, roc_auc

TREND = 13  # frames in the moving average that takes out each video's slow trend


def read_frames(path: Path) -> dict[str, dict[str, np.ndarray]]:
    rows: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    with path.open() as f:
        for r in csv.DictReader(f):
            rows[r["video"]].append((int(r["frame"]), int(r["label"]), float(r["psnr"])))
    return {v: {"frame": np.array([x[0] for x in xs]), "label": np.array([x[1] for x in xs]),
                "psnr": np.array([x[2] for x in xs])} for v, xs in sorted(rows.items())}


def residual(psnr: np.ndarray) -> np.ndarray:
    """PSNR minus its centred moving average (edges padded), same length."""
    half = TREND // 2
    trend = np.convolve(np.pad(psnr, half, mode="edge"), np.ones(TREND) / TREND, mode="valid")
    return psnr - trend


def phase_means(r: np.ndarray, phase: np.ndarray, period: int) -> np.ndarray:
    return np.array([r[phase == k].mean() if (phase == k).any() else 0.0 for k in range(period)])


def phase_share(r: np.ndarray, phase: np.ndarray, period: int) -> float:
    return float(np.var(phase_means(r, phase, period)[phase]) / np.var(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("frames_csv", type=Path, help="<out>_frames.csv written by ffp eval")
    ap.add_argument("--periods", default="6,8,10,11,12,13,14,24")
    ap.add_argument("--shuffles", type=int, default=200)
    a = ap.parse_args()
    if not a.frames_csv.is_file():
        sys.exit(f"gop_phase: not found: {a.frames_csv}")
    videos = read_frames(a.frames_csv)
    rng = np.random.default_rng(0)
    y = np.concatenate([v["label"] for v in videos.values()])
    plain = roc_auc(np.concatenate([-minmax(v["psnr"]) for v in videos.values()]), y)
    print(f"{len(videos)} videos, {len(y)} frames; auc_paper_psnr {plain:.4f}")
    print("period  share of residual variance  shuffled  auc_paper_psnr, phase means removed")
    residuals = {name: residual(v["psnr"]) for name, v in videos.items()}
    for period in (int(p) for p in a.periods.split(",")):
        shares, null, scores = [], [], []
        for name, v in videos.items():
            inner = slice(TREND // 2, len(v["psnr"]) - TREND // 2)  # away from the padded edges
            r, phase = residuals[name], v["frame"] % period
            shares.append(phase_share(r[inner], phase[inner], period))
            null.append(np.mean([phase_share(r[inner], rng.permutation(phase[inner]), period)
                                 for _ in range(a.shuffles)]))
            scores.append(-minmax(v["psnr"] - phase_means(r, phase, period)[phase]))
        auc = roc_auc(np.concatenate(scores), y)
        print(f"{period:6d}  {np.mean(shares):26.3f}  {np.mean(null):8.3f}  {auc:.4f}")


if __name__ == "__main__":
    main()
