"""A label-free validation of detection: pseudo-anomalies pasted into held-out NORMAL video.

    python docs/research/scripts/pseudo_anomaly.py --data ../shared/datasets/ped2 W1.pt W2.pt ... [--json out.json]

Held-out prediction PSNR says how well a model predicts normal video, not how well it detects; across image
sizes the two disagree (docs/research/HISTORY.md). This measures detection without touching the test set: in each
held-out normal training video (the ones recorded in the weights' meta), an object cut from a training video
(the region that moves most between two frames, with feathered edges) is pasted into the second half of the
video and moved across the frame at a fixed speed (cyclist-like; several speeds, rows and directions). The
frames with the pasted object are the positives. The AUC uses the paper's protocol (PSNR, per-video min-max,
micro AUC over all variants) and the causal one (the weights' calibrated score, causal EMA).
A proxy: it knows nothing of the real anomalies' appearance, only that they move unlike the training data.
At the default speeds its causal AUC saturates (0.97-1.00) for every trained model; `--speeds 0.5,1.0` does
not: its causal side separates undertrained from trained models (Spearman 0.65 with test causal AUC over 19
models) but does not order near-equal ones (among 8 good models 0.35 with the default donor, -0.01 to 0.18
with three others; docs/research/HISTORY.md).

An AUC near 1 cannot order models, so the same variants also give a continuous index that does not saturate: the
*detectability* d' = D / sigma, where D is the mean PSNR drop the pasted object causes (each object frame's PSNR
against the same frame's PSNR without the object: paired, so scene content cancels) and sigma the frame-to-frame
PSNR noise of the clean held-out video (PSNR minus its centred 9-frame moving average; root mean square over the
held-out videos). The paper protocol ranks a frame's PSNR against the other frames of its video, so what decides it
is how far an anomaly pulls the PSNR down relative to how much normal frames scatter: a model that predicts
everything better (normal frames and the object alike) can gain held-out PSNR and lose d'. Measured on the fifteen
files earlier rules shipped, d' ranks their test AUCs better than held-out PSNR and the AUC proxy (Spearman 0.22
paper / 0.55 causal); two seeds of one recipe differ by 0.42. The shipped ffp-ped2-lite.pt was chosen on it
(weights/README.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from heldout_psnr import print_table, size_of  # this script's folder is on sys.path

from model.data import find_videos, iter_frames, preprocess_frame
from model.evaluate import causal_smooth, minmax, roc_auc, score_video
from model.predictor import load_predictor


def moving_object(video: np.ndarray, box: tuple[int, int] = (56, 28)) -> tuple[np.ndarray, np.ndarray, int]:
    """The box around the strongest motion between two frames of a normal video, and a feathered alpha."""
    h, w = box
    diff = [cv2.GaussianBlur(cv2.absdiff(video[t], video[t - 1]), (0, 0), 6).astype(np.float32)
            for t in range(1, len(video))]
    t = int(np.argmax([d.max() for d in diff])) + 1
    y, x = np.unravel_index(int(np.argmax(diff[t - 1])), diff[t - 1].shape)
    y0 = int(np.clip(y - h // 2, 0, video.shape[1] - h))
    x0 = int(np.clip(x - w // 2, 0, video.shape[2] - w))
    patch = video[t, y0:y0 + h, x0:x0 + w].astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.exp(-(((yy - (h - 1) / 2) / (h / 2.5)) ** 4 + ((xx - (w - 1) / 2) / (w / 2.5)) ** 4))
    return patch, alpha.astype(np.float32), y0


def paste(video: np.ndarray, patch: np.ndarray, alpha: np.ndarray, row: int, speed: float, start: int,
          leftwards: bool, style: str = "appear") -> tuple[np.ndarray, np.ndarray]:
    """From `start` on, the object moves horizontally at `speed` px/frame, whole at the border in its first frame
    (`appear`) or sliding in from outside the frame (`enter`). Labels: the frames any of it is visible in."""
    out = video.astype(np.float32).copy()
    labels = np.zeros(len(video), bool)
    h, w = patch.shape
    width = video.shape[2]
    x0 = 0.0 if style == "appear" else -float(w)
    for t in range(start, len(video)):
        x = x0 + (t - start) * speed
        xi = round(width - w - x) if leftwards else round(x)
        if (xi > width - w // 2) if not leftwards else (xi < -w // 2):
            break  # half out at the far side
        lo, hi = max(0, xi), min(width, xi + w)
        if hi <= lo:
            continue
        a = alpha[:, lo - xi:hi - xi]
        region = out[t, row:row + h, lo:hi]
        out[t, row:row + h, lo:hi] = a * patch[:, lo - xi:hi - xi] + (1 - a) * region
        labels[t] = True
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), labels


def grey_video(source) -> np.ndarray:  # type: ignore[no-untyped-def]
    frames = [f if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in iter_frames(source)]
    return np.stack(frames)


def variants(data: Path, holdout: list[str], speeds: tuple[float, ...], donor_name: str | None = None
             ) -> tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray, np.ndarray]]]:
    """The clean held-out videos by name, and each variant as (held-out video's name, video, labels)."""
    sources = {s.name: s for s in find_videos(data, "training")}
    donor_name = donor_name or min(n for n in sources if n not in holdout)
    if donor_name not in sources or donor_name in holdout:
        raise SystemExit(f"--donor {donor_name}: not a training video outside the held-out ones {holdout}")
    donor = grey_video(sources[donor_name])
    patch, alpha, row = moving_object(donor)
    clean = {name: grey_video(sources[name]) for name in holdout}
    out = []
    for name, video in clean.items():
        start = len(video) // 2
        for i, speed in enumerate(speeds):
            for leftwards in (False, True):
                r = int(np.clip(row + (i - len(speeds) // 2) * 20, 0, video.shape[1] - patch.shape[0]))
                v, lab = paste(video, patch, alpha, r, speed, start, leftwards)
                out.append((name, v, lab))
    return clean, out


def measure(weights: Path, data: Path, speeds: tuple[float, ...], half_life: float, device: str = "cpu",
            donor: str | None = None) -> dict:
    p = load_predictor(weights, device=device, precision="fp32")
    holdout = list(p.meta.get("holdout_videos") or [])
    if not holdout:
        raise SystemExit(f"{weights}: no held-out videos recorded in its meta")
    k = p.num_frames
    clean, pasted = variants(data, holdout, speeds, donor)

    def scores(video: np.ndarray) -> dict[str, np.ndarray]:
        return score_video(p, np.stack([preprocess_frame(f, p.config) for f in video]))

    clean_psnr = {name: scores(video)["psnr"][k:] for name, video in clean.items()}
    paper, causal, ys, drops = [], [], [], []
    for name, video, labels in pasted:
        s = scores(video)
        paper.append(1 - minmax(s["psnr"][k:]))
        z = s["score"][k:] if p.calibration is not None else s["anomaly"][k:]
        causal.append(causal_smooth(z, half_life))
        ys.append(labels[k:])
        drops.append((clean_psnr[name] - s["psnr"][k:])[labels[k:]])  # paired: the same frame without the object
    y = np.concatenate(ys)
    noise = float(np.sqrt(np.mean([highpass(v).var() for v in clean_psnr.values()])))
    drop = float(np.mean(np.concatenate(drops)))
    return {"weights": str(weights), "image_size": list(p.config.image_size), "holdout": holdout,
            "variants": len(ys), "frames": len(y), "positives": int(y.sum()),
            "pseudo_auc_paper": roc_auc(np.concatenate(paper), y),
            "pseudo_auc_causal": roc_auc(np.concatenate(causal), y),
            "clean_psnr_db": float(np.mean(np.concatenate(list(clean_psnr.values())))),
            "drop_db": drop, "noise_db": noise, "detectability": drop / noise}


def highpass(psnr: np.ndarray, width: int = 9) -> np.ndarray:
    """PSNR minus its centred moving average (edges: the average of the frames that exist)."""
    kernel = np.ones(width)
    mean = np.convolve(psnr, kernel, "same") / np.convolve(np.ones_like(psnr), kernel, "same")
    return psnr - mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--speeds", default="1.5,2.5,3.5", help="object speeds in original pixels per frame")
    ap.add_argument("--donor", help="training video to cut the object from (default: the first one); another "
                    "donor measures how much the proxy depends on the object")
    ap.add_argument("--half-life", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda; fp32 either way (TF32 off on a GPU)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    # Full fp32 on a GPU too (cuDNN and cuBLAS would otherwise use TF32), so numbers match a CPU's.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    speeds = tuple(float(v) for v in a.speeds.split(","))
    print_table(
        a.weights, lambda w: measure(w, a.data, speeds, a.half_life, a.device, a.donor),
        f"{'weights':48s} {'size':>8s} {'paper':>7s} {'causal':>7s} {'drop dB':>8s} {'noise dB':>8s} {'d-prime':>8s}",
        lambda r: f"{r['weights']:48s} {size_of(r):>8s} {r['pseudo_auc_paper']:7.3f} {r['pseudo_auc_causal']:7.3f} "
                  f"{r['drop_db']:8.3f} {r['noise_db']:8.3f} {r['detectability']:8.3f}",
        lambda r: f"{r['variants']} variants, {r['frames']} frames, {r['positives']} with the object",
        a.json)

if __name__ == "__main__":
    main()
