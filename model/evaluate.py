"""Evaluation: frame-level micro AUC with the paper's protocol and with a causal (streamable) protocol.

- paper: drop the first k frames of each video, min-max normalise each video's PSNR over the whole video
  (this looks into the future: it cannot run live), concatenate all videos, ROC AUC.
- paper_smoothed: the same on the PSNR passed through the causal EMA the causal protocol and the live alert
  engine use (same half-life). Not the paper's protocol, which scores each frame alone: a separate number, so
  that a smoothed score is never reported as the paper's. A frame's PSNR carries noise from its own input
  window that the next window does not share; averaging over a few frames removes much of it.
- combined: the same with A_t = alpha L_int + beta L_grad + gamma L_flow.
- events (model/events.py): each test video replayed through the alert engine at `fps` (default 10):
  episodes alerted, false alarms, delays, and a sweep of on_threshold.
- causal: the calibrated score z = (anomaly - mean) / std with statistics from normal training footage
  only, smoothed by a causal EMA that restarts with each video, concatenated over all videos. This is what a
  live camera computes frame by frame.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .alerts import AlertParams
from .clip import score_frames, windows_from_frames
from .data import DataError, count_frames, find_videos, load_video
from .events import evaluate_events, plot_sweep, threshold_sweep
from .labels import find_labels, load_labels
from .predictor import Predictor
from .scoring import METRICS, Calibration, CausalSmoother, FrameScores, cell_anomaly, cell_statistics

log = logging.getLogger(__name__)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); higher score = positive."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative frames")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    y = np.asarray(labels).astype(bool)[order]
    tps, fps = np.cumsum(y), np.cumsum(~y)
    return np.r_[0, fps / max(fps[-1], 1)], np.r_[0, tps / max(tps[-1], 1)]


def score_video(predictor: Predictor, video: np.ndarray, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Per-frame metrics of one preprocessed video (T, C, H, W); the first k frames get NaN."""
    out = {m: np.full(len(video), np.nan, np.float64) for m in (*METRICS, "score")}
    for f in score_frames(predictor, video, batch_size=batch_size, preprocessed=True):
        if f.metrics is not None:
            for m, v in f.metrics.items():
                out[m][f.index] = np.nan if v is None else v
    return out


def calibrate_predictor(predictor: Predictor, normal_videos: list[np.ndarray], source: str,
                        batch_size: int = 16) -> Calibration:
    """Score statistics on normal footage (held-out training videos), to be stored with the weights: per cell
    (cell_statistics), then of the frame scores, the raw anomaly computed with those cell statistics."""
    # Without any earlier calibration, so the statistics are always of the raw terms (A_t = L_int + L_grad +
    # L_flow unscaled), whatever the predictor carried before: re-calibrating gives the same numbers.
    raw = predictor.with_calibration(None)
    parts: list[FrameScores] = []
    for video in normal_videos:
        windows = [w for _, w in windows_from_frames(video, raw.config) if w is not None]
        parts += [raw.score(np.stack(windows[i:i + batch_size])) for i in range(0, len(windows), batch_size)]
    if not parts:
        raise DataError(f"{source}: no video is longer than the model's {raw.config.num_frames} past frames, "
                        "so there is nothing to calibrate on")
    scores = {m: np.concatenate([getattr(p, m) for p in parts]).astype(np.float64) for m in METRICS}
    cell_error = np.concatenate([p.cell_error for p in parts])
    cell_speed = np.concatenate([p.cell_speed for p in parts])
    cells = cell_statistics(cell_error, cell_speed)
    stats = {k: np.asarray(v, np.float32) for k, v in cells.items()}
    scores["anomaly"] = cell_anomaly(cell_error, cell_speed, stats, predictor.score_config.anomaly).astype(np.float64)
    return Calibration.from_scores(scores, source, cells)


def minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = np.min(x), np.max(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def causal_smooth(x: np.ndarray, half_life: float) -> np.ndarray:
    """One video's scores through a fresh CausalSmoother (a new stream per video: no state crosses videos)."""
    smoother = CausalSmoother(half_life)
    return np.array([smoother.update(float(v)) for v in x])


def protocol_scores(per_video: dict[str, dict[str, np.ndarray]], k: int, calibration: Calibration | None,
                    half_life: float) -> dict[str, dict[str, np.ndarray]]:
    """Per-video anomaly scores (higher = more anomalous) of every protocol, first k frames dropped."""
    out: dict[str, dict[str, np.ndarray]] = {p: {} for p in
                                             ("paper_psnr", "paper_smoothed", "paper_local", "combined", "causal",
                                              "causal_raw")}
    for name, s in per_video.items():
        out["paper_psnr"][name] = 1 - minmax(s["psnr"][k:])  # regularity S(t) = minmax(PSNR); anomaly = 1 - S
        out["paper_smoothed"][name] = 1 - minmax(causal_smooth(s["psnr"][k:], half_life))
        out["paper_local"][name] = 1 - minmax(s["local_psnr"][k:])
        out["combined"][name] = minmax(s["a_t"][k:])
        z = s["score"][k:] if calibration is not None else s["anomaly"][k:]  # the scorer's calibrated z
        out["causal"][name] = causal_smooth(z, half_life)
        out["causal_raw"][name] = z
    return out


def protocol_aucs(prot: dict[str, dict[str, np.ndarray]], names: list[str], y: np.ndarray) -> dict[str, float]:
    """Micro AUC of every protocol: each video's scores concatenated in `names` order against labels y."""
    return {f"auc_{p}": roc_auc(np.concatenate([prot[p][n] for n in names]), y) for p in prot}


def evaluate(predictor: Predictor, data: Path, out: Path, *, labels: Path | None = None, batch_size: int = 16,
             half_life: float | None = None, alerts: AlertParams | None = None, fps: float = 10.0, plots: bool = True,
             progress: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    sources = find_videos(data, "testing")
    label_path = labels or find_labels(data)
    if label_path is None:
        raise DataError(f"no labels found in {data}; pass --labels (.mat, .json, .npy or test_frame_mask/)")
    counts = [count_frames(s) for s in sources]
    gt = load_labels(label_path, [s.name for s in sources], counts)
    k = predictor.num_frames
    per_video: dict[str, dict[str, np.ndarray]] = {}
    scoring_s, n_scored = 0.0, 0
    for src in tqdm(sources, desc="eval", disable=not progress):
        video = load_video(src, predictor.config)
        t0 = time.perf_counter()
        per_video[src.name] = score_video(predictor, video, batch_size)
        scoring_s += time.perf_counter() - t0
        n_scored += max(0, len(video) - k)
    names = [s.name for s in sources]
    y = np.concatenate([gt[n][k:] for n in names])
    alerts = alerts or AlertParams()
    # the causal protocol is what the alert engine smooths: its half-life unless one is named
    half_life = alerts.smoothing_half_life_frames if half_life is None else half_life
    prot = protocol_scores(per_video, k, predictor.calibration, half_life)
    aucs = protocol_aucs(prot, names, y)
    # The raw scores concatenated without any normalisation (no statistics at all): a causal baseline.
    aucs["auc_causal_psnr_raw"] = roc_auc(np.concatenate([-per_video[n]["psnr"][k:] for n in names]), y)
    anomaly = {n: per_video[n]["anomaly"] for n in names}
    events = evaluate_events(anomaly, gt, k, predictor.calibration, alerts, fps)
    sweep = threshold_sweep(anomaly, gt, k, predictor.calibration, alerts, fps)
    report: dict[str, Any] = {
        "dataset": Path(data).name, "weights": str(predictor.path) if predictor.path else None,
        "preset": predictor.config.name, "labels": str(label_path), "videos": len(names),
        "frames": len(y), "anomalous_frames": int(y.sum()), **aucs,
        **{key: v for key, v in events.items() if key != "episode_detail"},
        "alerts": asdict(alerts), "alerts_fps": fps, "episode_detail": events["episode_detail"],
        "threshold_sweep": sweep,
        "fps": n_scored / scoring_s if scoring_s > 0 else None,
        "device": str(predictor.device), "precision": predictor.precision, "causal_half_life": half_life,
        "calibrated": predictor.calibration is not None,
        "per_video": {n: _video_summary(gt[n][k:], {p: prot[p][n] for p in prot}, len(gt[n])) for n in names},
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report["frames_csv"] = str(_write_frames_csv(out, names, gt, per_video, prot, k))
    if plots:
        report["plots"] = _plots(out, prot, per_video, gt, names, k, aucs, alerts.on_threshold)
        report["plots"]["threshold_sweep"] = str(out.with_name(out.stem + "_sweep.png"))
        plot_sweep(sweep, report["plots"]["threshold_sweep"])
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out)
    return report


def _video_summary(labels: np.ndarray, scores: dict[str, np.ndarray], n_frames: int) -> dict[str, Any]:
    """Frame counts and, where a video has both normal and anomalous scored frames, its own AUC per protocol
    (which videos a model gets wrong; the headline numbers stay the micro AUC over all videos)."""
    labels = labels.astype(bool)
    summary: dict[str, Any] = {"frames": n_frames, "anomalous": int(labels.sum())}
    if labels.any() and not labels.all():
        summary.update({f"auc_{p}": roc_auc(s, labels) for p, s in scores.items()})
    return summary


def _write_frames_csv(out: Path, names: list[str], gt: dict[str, np.ndarray],
                      per_video: dict[str, dict[str, np.ndarray]], prot: dict[str, dict[str, np.ndarray]],
                      k: int) -> Path:
    """Every scored frame: its label, the raw terms and each protocol's score, so that any number in the
    report can be recomputed (or another protocol tried) without running the model again."""
    import csv

    path = out.with_name(out.stem + "_frames.csv")
    terms, protocols = [*METRICS, "score"], list(prot)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "frame", "label", *terms, *(f"protocol_{p}" for p in protocols)])
        for n in names:
            for i in range(k, len(gt[n])):
                w.writerow([n, i, int(gt[n][i]), *(f"{per_video[n][m][i]:.6g}" for m in terms),
                            *(f"{prot[p][n][i - k]:.6g}" for p in protocols)])
    tmp.replace(path)
    return path


def _plots(out: Path, prot: dict[str, dict[str, np.ndarray]], per_video: dict[str, dict[str, np.ndarray]],
           gt: dict[str, np.ndarray], names: list[str], k: int, aucs: dict[str, float],
           on_threshold: float) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.concatenate([gt[n][k:] for n in names])
    roc_path = out.with_name(out.stem + "_roc.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    for p in ("paper_psnr", "paper_smoothed", "paper_local", "combined", "causal"):
        fpr, tpr = roc_curve(np.concatenate([prot[p][n] for n in names]), y)
        ax.plot(fpr, tpr, label=f"{p} (AUC {aucs['auc_' + p]:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="frame-level ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(roc_path, dpi=110)
    plt.close(fig)

    # one figure per video (the model card shows one), then all videos on one page
    single_dir = out.with_name(out.stem + "_timelines")
    single_dir.mkdir(exist_ok=True)
    for n in names:
        fig, ax = plt.subplots(figsize=(8, 2.6))
        _timeline(ax, n, gt, prot, k, on_threshold)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(single_dir / f"{n}.png", dpi=100)
        plt.close(fig)

    tl_path = out.with_name(out.stem + "_timelines.png")
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.2 * rows), squeeze=False)
    for ax, n in zip(axes.flat, names, strict=False):
        _timeline(ax, n, gt, prot, k, on_threshold)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(tl_path, dpi=90)
    plt.close(fig)
    return {"roc": str(roc_path), "timelines": str(tl_path), "timeline_per_video": str(single_dir)}


def _timeline(ax: Any, n: str, gt: dict[str, np.ndarray], prot: dict[str, dict[str, np.ndarray]], k: int,
              on_threshold: float) -> None:
    t = np.arange(k, len(gt[n]))
    lab = gt[n][k:].astype(bool)
    ax.fill_between(t, 0, 1, where=lab, color="tab:red", alpha=0.2, step="mid", label="anomaly (truth)")
    ax.plot(t, 1 - prot["paper_psnr"][n], lw=1, label="regularity S(t) (paper, per-video min-max)")
    c = prot["causal"][n]
    lo, hi = -3.0, max(10.0, float(np.max(c)))
    ax.plot(t, np.clip((c - lo) / (hi - lo), 0, 1), lw=1, label=f"causal score z (scaled {lo:g}..{hi:.0f})")
    ax.axhline((on_threshold - lo) / (hi - lo), color="k", ls="--", lw=0.8,
               label=f"alert on_threshold z={on_threshold:g}")
    ax.set(title=f"video {n}", ylim=(0, 1), xlabel="frame")

