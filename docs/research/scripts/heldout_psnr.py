"""Compare weights trained at different image sizes on held-out NORMAL video, without test labels.

    python docs/research/scripts/heldout_psnr.py --data ../shared/datasets/ped2 W1.pt W2.pt ... \
        [--from-frame N] [--json out.json]

Within one run `ffp train` keeps the checkpoint with the best held-out prediction PSNR. Across image sizes that
number is not comparable: a larger frame keeps finer detail and more noise, so its PSNR is lower for the same
quality of prediction. Two measures that are comparable, each biased in a known direction, both printed:

- native: the prediction upsampled (bilinear) to the ORIGINAL frame size against the original frame, the same
  target for every model. Favours larger sizes (a 128x128 model cannot reproduce the background's fine detail).
- gain: PSNR of the prediction minus PSNR of copying the last frame, both at the model's own size (how much of
  the frame-to-frame change the model predicts). Favours smaller sizes (a larger frame's extra noise is in both
  errors and pulls the gain towards 0).

The rule (fixed before any test-set number of the candidates was seen): a model of another size replaces the
shipped one only if it is better on BOTH measures; between several such, the cheaper one for the service.
(Downsampling each model's prediction and frame to one small grid is no fairer: the resampler averages a larger
frame's noise away more. Comparing with the original resized by another resampler measures the resamplers.)
The held-out videos are the ones recorded in the weights' meta; all files compared must share them and score
the same frames (models with different history lengths: `--from-frame` the longest history).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from model.data import find_videos, iter_frames, preprocess_frame
from model.losses import psnr
from model.predictor import load_predictor


def measure(weights: Path, data: Path, batch: int = 32, from_frame: int = 0) -> dict:
    p = load_predictor(weights, device="cpu", precision="fp32")
    holdout = list(p.meta.get("holdout_videos") or [])
    if not holdout:
        raise SystemExit(f"{weights}: no held-out videos recorded in its meta")
    sources = {s.name: s for s in find_videos(data, "training")}
    k = p.num_frames
    own, copy, native = [], [], []
    for name in holdout:
        frames = list(iter_frames(sources[name]))  # decoded once, preprocessed at two sizes
        native_config = replace(p.config, image_size=frames[0].shape[:2])
        video = torch.as_tensor(np.stack([p.preprocess(f) for f in frames]))  # at the model's size
        original = torch.as_tensor(np.stack([preprocess_frame(f, native_config) for f in frames]))
        for start in range(max(k, from_frame), len(video), batch):  # frames with a full history
            idx = list(range(start, min(start + batch, len(video))))
            rows = [p.config.window_rows(i + 1) for i in idx]  # the buffer is frames 0..i: rows are indices
            past = torch.stack([video[r[:-1]].flatten(0, 1) for r in rows])
            with torch.inference_mode():
                pred = p.generator(past).float()
            own.append(psnr(pred, video[idx]))
            copy.append(psnr(video[[r[-2] for r in rows]], video[idx]))  # the model's last input frame
            up = F.interpolate(pred, size=original.shape[-2:], mode="bilinear", align_corners=False).clamp(-1, 1)
            native.append(psnr(up, original[idx]))
    own_t, copy_t, native_t = torch.cat(own), torch.cat(copy), torch.cat(native)
    return {"weights": str(weights), "image_size": list(p.config.image_size), "holdout": holdout,
            "frames": len(own_t), "own_psnr": float(own_t.mean()), "copy_last_psnr": float(copy_t.mean()),
            "gain": float((own_t - copy_t).mean()), "native_psnr": float(native_t.mean())}


def print_table(weights: list[Path], measure_one: Callable[[Path], dict[str, Any]], header: str,
                line: Callable[[dict[str, Any]], str], footer: Callable[[dict[str, Any]], str],
                json_path: Path | None, check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
                ) -> list[dict[str, Any]]:
    """Measure each weights file and print its row as it comes (a run can take minutes per file), then the
    footer of the first row; `check(first, row)` may refuse a row before it is printed. Writes the rows as JSON."""
    print(header)
    rows: list[dict[str, Any]] = []
    for w in weights:
        r = measure_one(w)
        if rows and check is not None:
            check(rows[0], r)
        rows.append(r)
        print(line(r), flush=True)
    print(footer(rows[0]))
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))
    return rows


def size_of(row: dict[str, Any]) -> str:
    return "x".join(map(str, row["image_size"]))


def same_frames(first: dict[str, Any], row: dict[str, Any]) -> None:
    if (row["holdout"], row["frames"]) != (first["holdout"], first["frames"]):
        raise SystemExit(f"{row['weights']} scored {row['frames']} frames of {row['holdout']}, {first['weights']} "
                         f"{first['frames']} of {first['holdout']} (history lengths differ: use --from-frame)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-frame", type=int, default=0, metavar="N",
                    help="score frames N.. of each video only (compare models of different history lengths on "
                         "the frames all of them predict from a full history)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print_table(
        a.weights, lambda w: measure(w, a.data, from_frame=a.from_frame),
        f"{'weights':48s} {'size':>8s} {'own dB':>7s} {'copy dB':>7s} {'gain dB':>7s} {'native dB':>9s}",
        lambda r: f"{r['weights']:48s} {size_of(r):>8s} {r['own_psnr']:7.3f} {r['copy_last_psnr']:7.3f} "
                  f"{r['gain']:7.3f} {r['native_psnr']:9.3f}",
        lambda r: f"held-out normal frames: {r['frames']} of videos {r['holdout']}",
        a.json, check=same_frames)


if __name__ == "__main__":
    main()
