"""Find dropped frames in a dataset: steps where everything that moves jumps about twice as far as usual.

    python benchmarks/frame_drops.py --data ../shared/datasets/ped2 [--split training] [--top 4]

A dropped frame in a training video teaches the predictor that people sometimes move two steps at once (an
anomaly's speed, labelled normal); in a test video it makes one normal frame unpredictable. Label-free: for each
step t-1 -> t it measures the mean absolute change over the pixels that move (more than 0.16 off the video's
per-pixel median in either frame, in [-1, 1] units, so the background's compression noise does not count; the
frames preprocessed as the lite model sees them) and divides it by the median of the 3 steps either side. A step with a ratio
near 1 is ordinary; a drop doubles the displacement (Ped2 test video 12 at frame 27: 1.76). Prints each video's
highest ratios and flags those above --threshold.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import PRESETS
from model.data import find_videos, load_video


def step_ratios(frames: np.ndarray, moving_threshold: float = 0.16, half_window: int = 3) -> np.ndarray:
    """ratio[i] for the step frames[i] -> frames[i+1]: its moving-pixel change over its neighbours' median."""
    off_median = np.abs(frames - np.median(frames, axis=0)) > moving_threshold
    change = np.abs(np.diff(frames, axis=0))
    moving = off_median[1:] | off_median[:-1]
    per_step = np.array([c[m].mean() if m.any() else 0.0 for c, m in zip(change, moving)])
    ratios = np.empty_like(per_step)
    for i in range(len(per_step)):
        neighbours = np.r_[per_step[max(0, i - half_window):i], per_step[i + 1:i + 1 + half_window]]
        ratios[i] = per_step[i] / max(float(np.median(neighbours)), 1e-8)
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default=None, help="training / testing (default: both)")
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=1.4)
    a = ap.parse_args()
    config = PRESETS["lite"]  # 128x128 grey, [-1, 1]: the frames as the model sees them
    for split in [a.split] if a.split else ["training", "testing"]:
        for source in find_videos(a.data, split):
            ratios = step_ratios(load_video(source, config))
            top = np.argsort(-ratios)[:a.top]
            flagged = [int(i) + 1 for i in np.flatnonzero(ratios > a.threshold)]
            shown = ", ".join(f"{int(i) + 1}: {ratios[i]:.2f}" for i in top)
            print(f"{split} {source.name}: {len(ratios) + 1} frames; highest (frame: ratio) {shown}; "
                  f"drops {flagged or 'none'}")


if __name__ == "__main__":
    main()
