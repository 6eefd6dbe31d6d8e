"""Compare weights trained at different image sizes on held-out NORMAL video, on one common grid.

    python benchmarks/heldout_psnr.py --data ../shared/datasets/ped2 W1.pt W2.pt ... [--grid 128x128]

`ffp train` keeps, within one run, the checkpoint with the best held-out prediction PSNR. Across runs at
different image sizes that number is not comparable (a larger frame holds finer detail, and different noise).
This is the rule for choosing between them, still without test labels: each model predicts the held-out
normal frames at its own size; the prediction is resized (area) to a common grid and compared with the real
frame resized from the original to that grid. The higher mean PSNR predicts normal motion better.
The held-out videos are the ones recorded in the weights' meta; all files compared must share them.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.data import find_videos, load_video
from model.losses import psnr
from model.weights import load_predictor


def grid_psnr(weights: Path, data: Path, grid: tuple[int, int], batch: int = 32) -> tuple[float, list[str], int]:
    p = load_predictor(weights, device="cpu", precision="fp32")
    holdout = list(p.meta.get("holdout_videos") or [])
    if not holdout:
        raise SystemExit(f"{weights}: no held-out videos recorded in its meta")
    sources = {s.name: s for s in find_videos(data, "training")}
    k = p.num_frames
    values: list[torch.Tensor] = []
    for name in holdout:
        video = torch.as_tensor(load_video(sources[name], p.config))  # at the model's size
        target = torch.as_tensor(load_video(sources[name], replace(p.config, image_size=grid)))  # at the grid
        for start in range(k, len(video), batch):
            idx = range(start, min(start + batch, len(video)))
            past = torch.stack([video[i - k:i].flatten(0, 1) for i in idx])
            with torch.inference_mode():
                pred = p.generator(past).float()
            if tuple(pred.shape[-2:]) != grid:
                pred = F.interpolate(pred, size=grid, mode="area")
            values.append(psnr(pred, target[list(idx)]))
    return float(torch.cat(values).mean()), holdout, int(sum(len(v) for v in values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--grid", default="128x128", help="HxW of the common grid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    grid = tuple(int(v) for v in a.grid.lower().split("x"))
    rows, held = [], None
    for w in a.weights:
        value, holdout, frames = grid_psnr(w, a.data, grid)  # type: ignore[arg-type]
        if held is not None and holdout != held:
            raise SystemExit(f"{w} was validated on {holdout}, the others on {held}: not comparable")
        held = holdout
        size = load_predictor(w, device="cpu", precision="fp32").config.image_size
        rows.append({"weights": str(w), "image_size": list(size), "grid_psnr": value, "frames": frames})
        print(f"{w!s:60s} {size[0]}x{size[1]:<5d} held-out PSNR on {grid[0]}x{grid[1]}: {value:.3f} dB "
              f"({frames} frames of {holdout})", flush=True)
    best = max(rows, key=lambda r: r["grid_psnr"])
    print(f"best: {best['weights']}")
    if a.json:
        a.json.write_text(json.dumps({"grid": list(grid), "holdout": held, "rows": rows}, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
