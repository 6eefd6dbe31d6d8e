"""Score an uploaded clip (POST /v1/score): sniff its container, decode defensively, score with the live model,
and run a fresh camera calibration and AlertEngine over the clip's own timeline (frame time = index / fps), as a
live camera would."""
from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from model import AlertEngine, CameraCalibration, EventUpdate, FrameScores, Predictor, score_frames

from .frames import REPORTED_METRICS
from .settings import AlertSettings

MAX_SIDE = 4096  # larger frames are refused: decoding them is a memory bomb, not a camera
MAX_FPS = 120.0
FALLBACK_FPS = 25.0


class ClipError(ValueError):
    """The clip cannot be scored (undecodable, empty, truncated, too long, too large); the message is for the
    client."""


class UnsupportedContainer(ClipError):
    """The file is not one of the video containers accepted (the API answers 415)."""


@dataclass(frozen=True)
class ClipResult:
    fps: float
    frames: list[dict[str, Any]]  # every frame; metrics are None for the first k (no history yet)
    events: list[dict[str, Any]] = field(default_factory=list)


def sniff_container(path: Path) -> str:
    """Name of the video container in `path`: mp4 (MP4/MOV), avi, matroska (MKV/WebM) or mpegts.

    FFmpeg probes content, so a playlist (#EXTM3U), an ffconcat script or a text file naming `concat:`/`file:`
    URLs would make it open other files or URLs: anything but these containers is refused (UnsupportedContainer)
    before OpenCV sees the file. MP4 and AVI are also checked for truncation (a box or RIFF chunk running past
    the end of the file, ClipError).
    """
    size = path.stat().st_size
    if size == 0:
        raise ClipError("the clip is empty")
    with open(path, "rb") as f:
        head = f.read(4096)
    if len(head) >= 12 and head[4:8] == b"ftyp":
        _check_isobmff(path, size)
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        riff_size = struct.unpack("<I", head[4:8])[0] + 8
        if riff_size > size:
            raise ClipError(f"truncated AVI: header says {riff_size} bytes, the upload has {size}")
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if len(head) >= 377 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"
    raise UnsupportedContainer("not a supported video container (expected MP4/MOV, AVI, Matroska/WebM or "
                               "MPEG-TS; playlists, scripts and text files are refused)")


def _check_isobmff(path: Path, size: int) -> None:
    """Walk the top-level boxes: every box must fit in the file, and a `moov` box must be present."""
    seen: set[bytes] = set()
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            hdr = f.read(16)
            if len(hdr) < 8:
                raise ClipError(f"truncated MP4: {size - pos} stray bytes at offset {pos}")
            box_size, kind = struct.unpack(">I4s", hdr[:8])
            if box_size == 1:
                if len(hdr) < 16:
                    raise ClipError(f"truncated MP4: cut inside the {kind!r} box header")
                box_size = struct.unpack(">Q", hdr[8:16])[0]
            elif box_size == 0:  # "extends to the end of the file"
                box_size = size - pos
            if box_size < 8:
                raise ClipError(f"corrupt MP4: box {kind!r} at offset {pos} has size {box_size}")
            if pos + box_size > size:
                raise ClipError(f"truncated MP4: box {kind.decode('latin-1')!r} needs {box_size} bytes "
                                f"at offset {pos}, the upload ends at {size}")
            seen.add(kind)
            pos += box_size
    if b"moov" not in seen:
        raise ClipError("MP4 without a 'moov' box (truncated or not finalised)")


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
    sniff_container(path)
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

    params = alerts.params()
    calibration, engine = CameraCalibration(predictor.calibration, params), AlertEngine("clip", params)
    out: list[dict[str, Any]] = []
    events: dict[str, dict[str, Any]] = {}
    for sf in scored:
        t = sf.index / fps
        row: dict[str, Any] = {"index": sf.index, "time": round(t, 4)}
        if sf.metrics is None:
            row.update(score=None, smoothed=None, **{k: None for k in REPORTED_METRICS})
        else:
            z = calibration.z(float(cast(float, sf.metrics["anomaly"])), t)
            for u in engine.update(z, t):
                events[u.event_id] = _event_dict(u)
            row.update(score=z, smoothed=engine.smoothed, **{k: sf.metrics[k] for k in REPORTED_METRICS})
        out.append(row)
    for u in engine.close(scored[-1].index / fps):
        events[u.event_id] = _event_dict(u)
    return ClipResult(fps=fps, frames=out, events=sorted(events.values(), key=lambda e: e["start"]))


def _event_dict(u: EventUpdate) -> dict[str, Any]:
    return {"id": u.event_id, "start": round(u.start_ts, 4), "end": None if u.end_ts is None else round(u.end_ts, 4),
            "peak_score": u.peak_score, "peak_time": round(u.peak_ts, 4), "frames": u.frames}
