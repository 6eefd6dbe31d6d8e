"""Diagnosis, with the test labels: would another patch score (size, several sizes, a per-location baseline) help?

    python benchmarks/patch_scores.py --data ../shared/datasets/ped2 [--weights W] [--json out.json]

The causal score now is z of the worst patch's PSNR (model/scoring.py): every patch of the frame is held to
one standard. In a fixed camera's view some places always predict worse than others (people close to the
camera, a tree, a screen) and some always better (the far end of a walkway, where a cyclist is a few pixels).
A per-location baseline measures each patch against what that patch usually does on the camera's own normal
footage: "how much worse than usual here", not "how bad". This script measures, on the held-out normal
videos (the calibration's footage) and the test set, the causal AUC (calibrated z, causal EMA, as `ffp eval`)
and the per-video min-max AUC of these frame scores:

- global: -min over patches of the patch PSNR (what ships; reproduces `ffp eval`'s `auc_causal`);
- frame: -PSNR of the whole frame (the paper's score), calibrated and smoothed the same way;
- global at half and at twice the patch side (the tenth session's idea: a far-away cyclist is smaller than
  a patch of 1/8 of the frame height);
- multi-scale: the max of the three sizes' calibrated z (each size's z from its own normal statistics);
- location mean: max over patches of (its mean PSNR on normal footage - its PSNR): dB below the usual;
- location z: max over patches of that difference / the patch's std on normal footage (std floored at the
  median std over patches, so a patch that never changed cannot make a z from noise).

Nothing here is shipped or selected: the numbers use test labels. They tell whether a scorer change is worth
a trial fixed in advance (a per-location baseline would also need a calibration per camera: it belongs to one
view). Measured in the twelfth session: none of these beats the shipped worst patch causally (weights/HISTORY.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.clip import score_frames
from model.data import find_videos, load_video, split_holdout
from model.evaluate import causal_smooth, minmax, roc_auc
from model.labels import find_labels, load_labels
from model.predictor import Predictor, load_predictor
from model.scoring import patch_psnr


def squared_errors(predictor: Predictor, video: np.ndarray) -> torch.Tensor:
    """(T - k, 1, H, W) squared prediction error (the scorer's heatmap squared) of each scored frame."""
    maps = [f.heatmap for f in score_frames(predictor, video, batch_size=16, preprocessed=True,
                                             keep_heatmaps=True) if f.heatmap is not None]
    return torch.from_numpy(np.stack(maps)).float().pow(2)[:, None]


def patch_map(sq: torch.Tensor, patch: int) -> np.ndarray:
    """(T, L) PSNR of every patch, computed as the scorer computes its worst patch."""
    return patch_psnr(sq, patch).numpy().astype(np.float64)


def frame_score(sq: torch.Tensor) -> np.ndarray:
    """-PSNR of the whole frame, higher = more anomalous: the paper's score for grey frames (for colour the error
    is averaged over the channels before squaring, as the heatmap is)."""
    return (-10 * torch.log10(1.0 / sq.flatten(1).mean(1).clamp_min(1e-10))).numpy().astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--holdout", type=int, default=2)
    ap.add_argument("--half-life", type=float, default=2.0)
    ap.add_argument("--json")
    a = ap.parse_args()

    predictor = load_predictor(a.weights, device="cpu", precision="fp32").with_calibration(None)
    k = predictor.num_frames
    _, held = split_holdout(find_videos(a.data, "training"), a.holdout)
    normal_sq = torch.cat([squared_errors(predictor, load_video(s, predictor.config)) for s in held])
    tests = find_videos(a.data, "testing")
    test_sq = {s.name: squared_errors(predictor, load_video(s, predictor.config)) for s in tests}
    counts = [len(test_sq[s.name]) + k for s in tests]
    patch = predictor.scorer.patch
    sizes = {"half": max(2, patch // 2), "shipped": patch, "double": patch * 2}
    normal_maps = {n: patch_map(normal_sq, p) for n, p in sizes.items()}
    test_maps = {n: {v: patch_map(sq, p) for v, sq in test_sq.items()} for n, p in sizes.items()}
    normal = normal_maps["shipped"]
    maps = test_maps["shipped"]
    gt = load_labels(find_labels(Path(a.data)), [s.name for s in tests], counts)
    y = np.concatenate([gt[s.name][k:] for s in tests])

    def zscore(cal: np.ndarray, x: np.ndarray) -> np.ndarray:
        """x calibrated by the statistics of `cal` (the held-out normal frames), as Calibration.z does."""
        return (x - cal.mean()) / (cal.std() + 1e-8)

    mean_loc, std_loc = normal.mean(0), normal.std(0)
    std_loc = np.maximum(std_loc, np.median(std_loc))
    # Each score: its raw values on the held-out normal frames and on each test video (higher = more anomalous).
    worst = {n: (-normal_maps[n].min(1), {v: -m.min(1) for v, m in test_maps[n].items()}) for n in sizes}

    multi = (np.max([zscore(worst[n][0], worst[n][0]) for n in sizes], 0),
             {v: np.max([zscore(worst[n][0], worst[n][1][v]) for n in sizes], 0) for v in maps})
    raw_scores = {
        "global": worst["shipped"],
        "frame": (frame_score(normal_sq),
                  {v: frame_score(sq) for v, sq in test_sq.items()}),
        "global_half_patch": worst["half"],
        "global_double_patch": worst["double"],
        "multi_scale": multi,
        "location_mean": ((mean_loc - normal).max(1), {v: (mean_loc - m).max(1) for v, m in maps.items()}),
        "location_z": (((mean_loc - normal) / std_loc).max(1),
                       {v: ((mean_loc - m) / std_loc).max(1) for v, m in maps.items()}),
    }
    results = {"weights": a.weights or "default", "held_out_frames": len(normal), "patch_sizes": sizes,
               "patches": normal.shape[1], "test_frames": len(y)}
    for name, (cal, per_video) in raw_scores.items():
        causal, offline = [], []
        for s in tests:
            z = zscore(cal, per_video[s.name])
            causal.append(causal_smooth(z, a.half_life))
            offline.append(minmax(z))
        results[name] = {
            "auc_causal": roc_auc(np.concatenate(causal), y),
            "auc_causal_unsmoothed": roc_auc(np.concatenate([per_video[s.name] for s in tests]), y),
            "auc_per_video_minmax": roc_auc(np.concatenate(offline), y),
            "normal_z_p99.9": float(np.percentile(zscore(cal, cal), 99.9)),
        }
    print(json.dumps(results, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
