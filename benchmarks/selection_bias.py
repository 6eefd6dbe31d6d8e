"""How much does choosing a checkpoint on the TEST labels inflate the paper-protocol AUC? A diagnosis.

    python benchmarks/selection_bias.py --data ../shared/datasets/ped2 runs/gpu-snap/b1-s*-snapshots.pt \
        [runs/RUN/snapshots ...] [--json out.json]

The public frame-prediction code kept the checkpoint with the best test AUC (`../shared/docs/paper-notes.md`);
this project never does. Each input file holds the snapshots of one training run (`ffp train --snapshot-every
N`, packed by `benchmarks/gpu_lite_scaling.sh` as {step: weights blob}). Every snapshot goes through the
code path of `ffp calibrate` and `ffp eval` (calibrated on the run's held-out normal videos, fp32 on the CPU):
its test AUC under the paper protocol, the smoothed one, the combined score and the causal protocol, and its
mean PSNR on the held-out videos. Per run and protocol it compares three ways of picking one snapshot: the
last (a schedule fixed in advance, as shipped here), the best held-out PSNR (label-free), and the best test
AUC of that protocol (the public code's way, which uses test labels). The gap between the last and the
best-on-test is what test-label selection adds on its own.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.checkpoint import safe_torch_load, weights_of
from model.config import ModelConfig
from model.data import count_frames, find_videos, load_video, split_holdout
from model.evaluate import calibrate_predictor, protocol_aucs, protocol_scores, score_video
from model.labels import find_labels, load_labels
from model.predictor import predictor_from_blob

PROTOCOLS = ("paper_psnr", "paper_smoothed", "combined", "causal")


def snapshot_aucs(blob: dict, held_videos: list[np.ndarray], test_videos: dict[str, np.ndarray],
                  y: np.ndarray, half_life: float = 2.0) -> dict[str, float]:
    """Held-out PSNR and test AUC of every protocol for one snapshot, exactly as calibrate + eval do."""
    predictor = predictor_from_blob(blob, device="cpu", precision="fp32")
    k = predictor.num_frames
    calibration = calibrate_predictor(predictor, held_videos, "held-out normal videos")
    predictor = predictor.with_calibration(calibration)
    held_psnr = calibration.mean["psnr"]  # the held-out frames' mean PSNR, from the calibration's own pass
    per_video = {name: score_video(predictor, v) for name, v in test_videos.items()}
    aucs = protocol_aucs(protocol_scores(per_video, k, calibration, half_life), list(test_videos), y)
    return {"heldout_psnr": held_psnr, **{f"auc_{p}": aucs[f"auc_{p}"] for p in PROTOCOLS}}


def _run_name(path: Path) -> str:
    return path.parent.name if path.is_dir() else path.name.removesuffix("-snapshots.pt")


def _load_snapshots(path: Path) -> dict[int, dict]:
    """{step: weights blob} from a packed file or from a run's snapshots/ folder (plus its last.pt)."""
    if not path.is_dir():
        return safe_torch_load(path)
    snaps = {int(f.stem.split("-")[1]): safe_torch_load(f) for f in sorted(path.glob("step-*.pt"))}
    last = path.parent / "last.pt"
    if last.is_file():
        blob = weights_of(safe_torch_load(last))
        snaps.setdefault(int(blob["meta"]["step"]), blob)
    return snaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("snapshots", nargs="+", type=Path,
                    help="one per run: a file of {step: weights blob} or a run's snapshots/ folder")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    names = [_run_name(f) for f in a.snapshots]
    if len(set(names)) < len(names):
        raise SystemExit(f"two inputs have the same run name: {names}")
    runs = {n: _load_snapshots(f) for n, f in zip(names, a.snapshots)}
    first = next(iter(next(iter(runs.values())).values()))
    config = ModelConfig.from_dict(first["model_config"])
    k = config.num_frames
    tests = find_videos(a.data, "testing")
    gt = load_labels(find_labels(a.data), [s.name for s in tests], [count_frames(s) for s in tests])
    test_videos = {s.name: load_video(s, config) for s in tests}
    y = np.concatenate([gt[s.name][k:] for s in tests])
    holdout = first["meta"]["holdout_videos"]
    _, held = split_holdout(find_videos(a.data, "training"), len(holdout))
    assert [s.name for s in held] == holdout, (held, holdout)
    held_videos = [load_video(s, config) for s in held]

    rows: dict[str, list[dict[str, float]]] = {}
    for name, snaps in runs.items():
        rows[name] = []
        for step in sorted(snaps):
            rows[name].append({"step": step, **snapshot_aucs(snaps[step], held_videos, test_videos, y)})
            r = rows[name][-1]
            print(f"{name} step {step:6d}: held-out {r['heldout_psnr']:.3f} dB, test " +
                  " ".join(f"{p} {r[f'auc_{p}']:.4f}" for p in PROTOCOLS), flush=True)

    summary: dict[str, dict] = {}
    for p in PROTOCOLS:
        key = f"auc_{p}"
        picks = {"last (fixed schedule)": lambda r: r[-1],
                 "best held-out PSNR (label-free)": lambda r: max(r, key=lambda x: x["heldout_psnr"]),
                 "best test AUC (test labels)": lambda r, key=key: max(r, key=lambda x: x[key])}
        print(f"\n{key:34s} " + " ".join(f"{n:>12s}" for n in rows) + "     mean")
        for label, pick in picks.items():
            values = [pick(r)[key] for r in rows.values()]
            summary.setdefault(key, {})[label] = {"per_run": values, "mean": float(np.mean(values))}
            print(f"{label:34s} " + " ".join(f"{v:12.4f}" for v in values) + f"   {np.mean(values):.4f}")
    if a.json:
        a.json.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
