"""Score an uploaded clip (POST /v1/score): decode defensively, score with the live model, run a fresh
AlertEngine over the clip's own timeline (frame time = index / fps)."""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from model import FrameScores, Predictor, score_frames

from .alerts import AlertEngine
from .settings import AlertSettings

MAX_SIDE = 4096  # larger frames are refused: decoding them is a memory bomb, not a camera
MAX_FPS = 120.0
FALLBACK_FPS = 25.0
METRIC_KEYS = ("score", "psnr", "local_psnr", "l_int", "l_grad", "l_flow", "a_t")


class ClipError(ValueError):
    """The clip cannot be scored (undecodable, empty, too long, too large); the message is for the client."""


@dataclass(frozen=True)
class ClipResult:
    fps: float
    frames: list[dict[str, Any]]  # every frame; metrics are None for the first k (no history yet)
    events: list[dict[str, Any]] = field(default_factory=list)


def _sniff(path: Path) -> None:
    """Accept only real video containers. FFmpeg probes content, so an upload that is a playlist (HLS,
    ffconcat, SDP) would make it open other local files or URLs."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise ClipError("the clip is empty")
    ok = (head[4:8] == b"ftyp" or head[:4] == b"RIFF" and head[8:12] == b"AVI "  # MP4/MOV, AVI
          or head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV"  # MKV/WebM, FLV
          or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")  # MPEG-PS / MPEG-1/2 video
          or head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47"  # MPEG-TS
          or head[:4] == b"\x00\x00\x00\x01" or head[:3] == b"\x00\x00\x01")  # raw H.264/H.265
    if not ok:
        raise ClipError("not a supported video container (mp4, mov, avi, mkv, webm, flv, mpeg-ts)")


class _LockedScorer:
    """The predictor as a `FrameScorer` with its forward behind the model lock, taken per batch, so a long
    clip interleaves with the live cameras instead of freezing them."""

    def __init__(self, predictor: Predictor, lock: threading.Lock) -> None:
        self._p, self._lock = predictor, lock
        self.num_frames = predictor.num_frames
        self.config = predictor.config  # the window rule (k, frame_stride) score_frames cuts windows by
        self.calibration = predictor.calibration

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return self._p.preprocess(frame)

    def score(self, windows: np.ndarray) -> FrameScores:
        with self._lock:
            return self._p.score(windows)


def score_clip(predictor: Predictor, path: Path, *, alerts: AlertSettings, max_seconds: float,
               model_lock: threading.Lock, batch_size: int = 8) -> ClipResult:
    _sniff(path)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise ClipError("cannot decode the clip (unknown or corrupt video)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if math.isfinite(fps) and 1.0 <= fps <= MAX_FPS else FALLBACK_FPS
        max_frames = int(max_seconds * fps)
        declared = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        if math.isfinite(declared) and declared > max_frames:  # cheap early refusal; decoding checks again
            raise ClipError(f"the clip is longer than {max_seconds:g} s ({declared:.0f} frames at {fps:g} fps)")

        def frames() -> Iterator[np.ndarray]:
            n = 0
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                if max(frame.shape[:2]) > MAX_SIDE:
                    raise ClipError(f"frames larger than {MAX_SIDE} px are not accepted")
                n += 1
                if n > max_frames:
                    raise ClipError(f"the clip is longer than {max_seconds:g} s ({max_frames} frames at {fps:g} fps)")
                yield frame

        scorer = _LockedScorer(predictor, model_lock)
        scored = list(score_frames(scorer, frames(), batch_size=batch_size))
    finally:
        cap.release()
    if not scored:
        raise ClipError("the clip has no decodable frames")
    if len(scored) <= predictor.num_frames:
        raise ClipError(f"the clip needs more than {predictor.num_frames} frames to be scored")

    engine = AlertEngine("clip", alerts, predictor.calibration)
    out: list[dict[str, Any]] = []
    events: dict[str, dict[str, Any]] = {}
    for sf in scored:
        t = sf.index / fps
        row: dict[str, Any] = {"index": sf.index, "time": round(t, 4)}
        if sf.metrics is None:
            row.update({k: None for k in METRIC_KEYS}, smoothed=None)
        else:
            updates = engine.update(float(cast(float, sf.metrics["anomaly"])), t)
            row.update({k: sf.metrics[k] for k in METRIC_KEYS if k != "score"},
                       score=engine.score, smoothed=engine.smoothed)
            for u in updates:
                events[u.event_id] = _event_dict(u)
        out.append(row)
    for u in engine.close(scored[-1].index / fps):
        events[u.event_id] = _event_dict(u)
    return ClipResult(fps=fps, frames=out, events=sorted(events.values(), key=lambda e: e["start"]))


def _event_dict(u: Any) -> dict[str, Any]:
    return {"id": u.event_id, "start": round(u.start_ts, 4), "end": None if u.end_ts is None else round(u.end_ts, 4),
            "peak_score": u.peak_score, "peak_time": round(u.peak_ts, 4), "frames": u.frames}
