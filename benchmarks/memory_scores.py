"""A diagnosis with the test labels: does a generator's bottleneck memory (`--arch memory_items=N`) see anomalies?

    python benchmarks/memory_scores.py --data ../shared/datasets/ped2 --frames reports/bm-last_frames.csv \
        [--weights weights/ffp-ped2-lite.pt] [--json out.json]

Park et al. (MNAD) score a frame by its prediction PSNR and by the distance of its bottleneck vectors to their
nearest memory items (the compactness term, per frame), each min-max normalised per video, mixed 0.6 / 0.4
(their code's default `--alpha 0.6`). This prints the paper-protocol AUC of: the PSNR alone (as `ffp eval`), the
feature distance alone, and MNAD's mix; a causal version (no per-video statistics, no look-ahead): the shipped
calibrated worst-patch z plus the feature distance's z on held-out normal video (equal weights, chosen before
looking), smoothed as `ffp eval` smooths; and the mean distance on held-out normal, test normal and test
anomalous frames. `--frames` is the `<out>_frames.csv` that `ffp eval` wrote for the same weights (its PSNR
column is reused, so the PSNR row reproduces `auc_paper_psnr`). Nothing here is selected or shipped.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data import find_videos, load_video, split_holdout
from model.evaluate import causal_smooth, minmax, roc_auc
from model.labels import find_labels, load_labels
from model.predictor import load_predictor


def feature_distance(generator: torch.nn.Module, video: np.ndarray, k: int) -> np.ndarray:
    """(T - k,) mean squared distance of each frame's bottleneck vectors to their nearest memory item."""
    memory = generator.unet.memory
    similarities: list[torch.Tensor] = []  # the memory's own output: cosine of each query to each item
    hook = memory.register_forward_hook(lambda _m, _inputs, out: similarities.append(out[1]))
    try:
        frames = torch.from_numpy(video)
        windows = torch.stack([frames[t - k:t].flatten(0, 1) for t in range(k, len(frames))])
        with torch.inference_mode():
            for batch in windows.split(32):
                generator(batch)
    finally:
        hook.remove()
    nearest = torch.cat(similarities).amax(dim=-1)  # (T - k, h, w)
    # |q - p|^2 = 2 - 2 cos between unit vectors, per element as in the compactness term
    sq_dist = (2.0 - 2.0 * nearest) / memory.items.shape[1]
    return sq_dist.flatten(1).mean(dim=1).numpy().astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--frames", required=True, type=Path, help="ffp eval's <out>_frames.csv for these weights")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--alpha", type=float, default=0.6, help="MNAD's weight of the PSNR term")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    predictor = load_predictor(a.weights, device="cpu", precision="fp32")
    generator = predictor.generator.float().eval()
    if getattr(generator.unet, "memory", None) is None:
        sys.exit(f"{predictor.path}: this generator has no memory (--arch memory_items=N)")
    k = predictor.num_frames

    rows = list(csv.DictReader(a.frames.open()))
    psnr_of = {(r["video"], int(r["frame"])): float(r["psnr"]) for r in rows}
    patch_z_of = {(r["video"], int(r["frame"])): float(r["protocol_causal_raw"]) for r in rows}
    _, held_out = split_holdout(find_videos(a.data, "training"), 2)
    dist_held_out = np.concatenate([feature_distance(generator, load_video(s, predictor.config), k)
                                    for s in held_out])
    mu, sd = dist_held_out.mean(), dist_held_out.std()
    sources = find_videos(a.data, "testing")
    gt = load_labels(find_labels(a.data), [s.name for s in sources], None)
    by_psnr, by_dist, by_mix, causal_dist, causal_mix, labels = [], [], [], [], [], []
    dist_normal: list[float] = []
    dist_anomalous: list[float] = []
    for src in sources:
        dist = feature_distance(generator, load_video(src, predictor.config), k)
        psnr = np.array([psnr_of[(src.name, t)] for t in range(k, k + len(dist))])
        y = np.asarray(gt[src.name][k:k + len(dist)])
        normality = a.alpha * minmax(psnr) + (1 - a.alpha) * (1 - minmax(dist))
        by_psnr.append(1 - minmax(psnr))
        by_dist.append(minmax(dist))
        by_mix.append(1 - normality)
        z_dist = (dist - mu) / sd
        z_mix = z_dist + np.array([patch_z_of[(src.name, t)] for t in range(k, k + len(dist))])
        for out, z in ((causal_dist, z_dist), (causal_mix, z_mix)):
            out.append(causal_smooth(z, half_life=2.0))
        labels.append(y)
        dist_normal += list(dist[y == 0])
        dist_anomalous += list(dist[y == 1])
    y = np.concatenate(labels)
    report = {
        "weights": str(predictor.path), "memory_items": predictor.config.memory_items, "alpha": a.alpha,
        "auc_paper_psnr": roc_auc(np.concatenate(by_psnr), y),
        "auc_paper_feature_distance": roc_auc(np.concatenate(by_dist), y),
        "auc_paper_mnad_mix": roc_auc(np.concatenate(by_mix), y),
        "auc_causal_feature_distance": roc_auc(np.concatenate(causal_dist), y),
        "auc_causal_patch_plus_distance": roc_auc(np.concatenate(causal_mix), y),
        "mean_distance": {"held_out_normal": float(dist_held_out.mean()), "test_normal": float(np.mean(dist_normal)),
                          "test_anomalous": float(np.mean(dist_anomalous))},
    }
    print(json.dumps(report, indent=2))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
