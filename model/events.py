"""Event-level evaluation: what a person watching the camera gets from the alert engine.

Each test video is replayed, one scored frame every 1/fps s, through the service's own CameraCalibration and
AlertEngine (model.clip.ClipAlerts, as `ffp score` and POST /v1/score replay a clip) with the alert settings in
force. Then, over all videos:
- episodes: the ground-truth anomalous intervals (maximal runs of anomalous frames);
- episodes_alerted / event_recall: episodes caught by an alert: one that overlaps the episode (alert = [start_ts,
  end_ts] of an event) and was raised (its "start" message, min_duration_s after the score crossed on_threshold)
  at or after the episode's start, or the video's first scored frame when the episode starts before it. An alert
  raised during normal frames that stays open into an episode did not detect it: a score stuck above the
  threshold would otherwise "catch" every episode of a video with one alert;
- false_alarms: alerts that catch no episode; false_alarms_per_hour: per hour of normal scored frames;
- delay_s_median / delay_s_max over the caught episodes: from the episode's (clipped) start to the moment the
  first alert that caught it was raised.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .alerts import AlertParams, EventUpdate
from .clip import ClipAlerts
from .scoring import Calibration

# The sweep's on_threshold grid (z units); the operating point is added to it. off_threshold keeps its gap.
SWEEP_THRESHOLDS = tuple(float(v) for v in np.arange(0.5, 12.01, 0.25))


@dataclass(frozen=True)
class Alert:
    raised_s: float  # when the engine emitted "start"
    start_s: float  # the event's start: the first frame of the crossing that opened it
    end_s: float


def episodes(labels: np.ndarray) -> list[tuple[int, int]]:
    """Frame labels (T,) -> the anomalous intervals as [first, last + 1) frame indices."""
    y = np.r_[0, np.asarray(labels).astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(y))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def replay(anomaly: np.ndarray, k: int, calibration: Calibration | None, params: AlertParams,
           fps: float) -> list[Alert]:
    """One video's raw anomaly scores (T,; the first k unscored) through a fresh camera -> its alerts."""
    ids = (str(i) for i in itertools.count())
    timeline = ClipAlerts(calibration, params, fps, camera_id="eval", new_id=lambda: next(ids))
    raised: dict[str, float] = {}
    alerts: list[Alert] = []
    for i in range(k, len(anomaly)):
        for u in timeline.update(i, float(anomaly[i]))[1]:
            if u.kind == "start":
                raised[u.event_id] = timeline.time
            elif u.kind == "end":
                alerts.append(_alert(u, raised, timeline.time))
    alerts.extend(_alert(u, raised, timeline.time) for u in timeline.close())
    return alerts


def _alert(end: EventUpdate, raised: dict[str, float], now: float) -> Alert:
    """An event's "end" message, with when its "start" was raised -> the Alert."""
    return Alert(raised[end.event_id], end.start_ts, float(end.end_ts if end.end_ts is not None else now))


def event_metrics(videos: dict[str, tuple[np.ndarray, list[Alert]]], k: int, fps: float) -> dict[str, Any]:
    """Per video (frame labels, alerts) -> the event-level numbers (module docstring) and a per-episode list."""
    n_alerted, false_alarms, normal_frames = 0, 0, 0
    delays: list[float] = []
    detail: list[dict[str, Any]] = []
    for name, (labels, alerts) in videos.items():
        normal_frames += int((~np.asarray(labels[k:]).astype(bool)).sum())
        eps = episodes(labels)
        # an alert's frames: from its start to its end, both inclusive; raised at frame r
        spans = [(round(al.start_s * fps), round(al.end_s * fps), round(al.raised_s * fps)) for al in alerts]

        def catches(span: tuple[int, int, int], a: int, b: int) -> bool:
            s, e, r = span
            return s < b and e >= a and r >= max(a, k)

        false_alarms += sum(1 for sp in spans if not any(catches(sp, a, b) for a, b in eps))
        for a, b in eps:
            first = max(a, k)
            hits = [al for al, sp in zip(alerts, spans, strict=True) if catches(sp, a, b)]
            delay = min(h.raised_s for h in hits) - first / fps if hits else None
            if delay is not None:
                n_alerted += 1
                delays.append(delay)
            detail.append({"video": name, "first_frame": a, "end_frame": b, "alerted": delay is not None,
                           "delay_s": None if delay is None else round(delay, 4)})
    hours = normal_frames / fps / 3600
    return {
        "episodes": len(detail), "episodes_alerted": n_alerted,
        "event_recall": n_alerted / len(detail) if detail else None,
        "false_alarms": false_alarms,
        "false_alarms_per_hour": false_alarms / hours if hours > 0 else None,
        "delay_s_median": float(np.median(delays)) if delays else None,
        "delay_s_max": float(np.max(delays)) if delays else None,
        "episode_detail": detail,
    }


def evaluate_events(anomaly: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int,
                    calibration: Calibration | None, params: AlertParams, fps: float) -> dict[str, Any]:
    """All test videos' raw anomaly scores through the alert engine with `params`."""
    return event_metrics({n: (labels[n], replay(anomaly[n], k, calibration, params, fps)) for n in anomaly}, k, fps)


def threshold_sweep(anomaly: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int,
                    calibration: Calibration | None, params: AlertParams, fps: float,
                    thresholds: tuple[float, ...] = SWEEP_THRESHOLDS) -> list[dict[str, Any]]:
    """Event recall against false alarms per hour as on_threshold moves (off_threshold keeps its gap below it,
    every other setting as in `params`); the row of `params` itself has operating_point true."""
    gap = params.on_threshold - params.off_threshold
    rows = []
    for on in sorted({*thresholds, params.on_threshold}):
        m = evaluate_events(anomaly, labels, k, calibration, replace(params, on_threshold=on, off_threshold=on - gap),
                            fps)
        rows.append({"on_threshold": on, "event_recall": m["event_recall"], "false_alarms": m["false_alarms"],
                     "false_alarms_per_hour": m["false_alarms_per_hour"], "delay_s_median": m["delay_s_median"],
                     "operating_point": on == params.on_threshold})
    return rows


def plot_sweep(rows: list[dict[str, Any]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fa = [r["false_alarms_per_hour"] or 0.0 for r in rows]
    rec = [r["event_recall"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(fa, rec, "o-", ms=3, lw=1, label="on_threshold sweep")
    for r, x, y in zip(rows, fa, rec, strict=True):
        if r["operating_point"]:
            ax.plot([x], [y], "r*", ms=14, label=f"operating point (on_threshold {r['on_threshold']:g})")
    ax.set(xlabel="false alarms per hour of normal video", ylabel="event recall (episodes alerted)",
           title="alerts: event recall vs false alarms", ylim=(-0.02, 1.02))
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
