"""How much does choosing a checkpoint on the TEST labels inflate the paper-protocol AUC? A diagnosis.

    python benchmarks/selection_bias.py --data ../shared/datasets/ped2 runs/gpu-snap/b1-s*-snapshots.pt \
        [runs/RUN/snapshots ...] [--json out.json]

The public frame-prediction code kept the checkpoint with the best test AUC (`../shared/docs/paper-notes.md`);
this project never does. Each input file holds the snapshots of one training run (`ffp train --snapshot-every
N`, packed by `benchmarks/gpu_lite_scaling.sh` as {step: weights blob}). For every snapshot it measures the
paper protocol on test (`auc_paper_psnr`: frame PSNR, min-max per test video, first k frames dropped, micro
AUC; the same PSNR and normalisation as `ffp eval`) and the PSNR on the run's held-out normal videos, then
compares per run three ways of picking one snapshot: the last (a schedule fixed in advance, as shipped here),
the best held-out PSNR (label-free), and the best test AUC (the public code's way, which uses test labels).
The gap between the last and the best-on-test is what test-label selection adds on its own.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import ModelConfig
from model.data import count_frames, find_videos, load_video, split_holdout
from model.evaluate import minmax, roc_auc
from model.labels import find_labels, load_labels
from model.losses import psnr
from model.unet import Generator
from model.weights import safe_torch_load, weights_of


@torch.no_grad()
def frame_psnr(generator: Generator, video: torch.Tensor, k: int, batch: int = 32) -> np.ndarray:
    """(T - k,) PSNR of each predicted frame of a preprocessed video (T, C, H, W) in [-1, 1]."""
    out = []
    for t0 in range(k, len(video), batch):
        ts = range(t0, min(t0 + batch, len(video)))
        past = torch.stack([video[t - k:t].flatten(0, 1) for t in ts])
        out.append(psnr(generator(past), video[list(ts)]))
    return torch.cat(out).double().numpy()


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
    test_videos = [torch.from_numpy(load_video(s, config)) for s in tests]
    y = np.concatenate([gt[s.name][k:] for s in tests])
    holdout = first["meta"]["holdout_videos"]
    _, held = split_holdout(find_videos(a.data, "training"), len(holdout))
    assert [s.name for s in held] == holdout, (held, holdout)
    held_videos = [torch.from_numpy(load_video(s, config)) for s in held]

    rows: dict[str, list[dict[str, float]]] = {}
    for name, snaps in runs.items():
        rows[name] = []
        for step in sorted(snaps):
            blob = snaps[step]
            generator = Generator(ModelConfig.from_dict(blob["model_config"]))
            generator.load_state_dict({kk: v.float() for kk, v in blob["generator"].items()})
            generator.eval()
            anomaly = np.concatenate([1 - minmax(frame_psnr(generator, v, k)) for v in test_videos])
            held_psnr = float(np.mean(np.concatenate([frame_psnr(generator, v, k) for v in held_videos])))
            rows[name].append({"step": step, "auc_paper_psnr": roc_auc(anomaly, y), "heldout_psnr": held_psnr})
            print(f"{name} step {step:6d}: held-out {held_psnr:.3f} dB, test paper AUC {rows[name][-1]['auc_paper_psnr']:.4f}",
                  flush=True)

    picks = {"last (fixed schedule)": lambda r: r[-1], "best held-out PSNR (label-free)":
             lambda r: max(r, key=lambda x: x["heldout_psnr"]), "best test AUC (test labels)":
             lambda r: max(r, key=lambda x: x["auc_paper_psnr"])}
    summary = {}
    print(f"\n{'pick':34s} " + " ".join(f"{n:>8s}" for n in rows) + "     mean")
    for label, pick in picks.items():
        values = [pick(r)["auc_paper_psnr"] for r in rows.values()]
        summary[label] = {"per_run": values, "mean": float(np.mean(values))}
        print(f"{label:34s} " + " ".join(f"{v:8.4f}" for v in values) + f"   {np.mean(values):.4f}")
    if a.json:
        a.json.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
