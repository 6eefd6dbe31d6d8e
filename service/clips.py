"""Score an uploaded clip (POST /v1/score): sniff its container, decode defensively, score with the live model,
and run a fresh camera calibration and alert engine over the clip's own timeline (model.ClipAlerts: frame time =
index / fps), as a live camera would. Its events have the live events' fields, with times in seconds from the
clip's start, and keep their peak frame and heatmap for the event images."""
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

from model import (
    CLIP_FALLBACK_FPS,
    ClipAlerts,
    EventUpdate,
    FrameScores,
    Predictor,
    clip_event,
    score_frames,
    unscorable,
)

from .frames import REPORTED_METRICS
from .settings import AlertSettings, Settings

MAX_SIDE = 4096  # a frame this wide or tall is refused whatever its area: a strip, not a camera
MAX_FPS = 120.0


class ClipError(ValueError):
    """The clip cannot be scored (undecodable, empty, truncated, too long, too large); the message is for the
    client."""


class UnsupportedContainer(ClipError):
    """The file is not one of the video containers accepted (the API answers 415)."""


class ClipCancelled(Exception):
    """Scoring stopped because the caller set its cancel event (the client went away)."""


@dataclass(frozen=True)
class ClipLimits:
    """What one clip may cost. Checked against the container's header before decoding, and counted again while
    decoding, since a header may lie about the frame count and the frame size."""

    max_seconds: float
    max_frames: int
    max_frame_pixels: int
    max_pixels: float  # frames x width x height decoded, in all

    @classmethod
    def from_settings(cls, s: Settings) -> ClipLimits:
        return cls(s.max_clip_seconds, s.max_clip_frames, s.max_clip_frame_pixels, s.max_clip_megapixels * 1e6)

    def check_length(self, frames: float, fps: float, when: str) -> None:
        if frames > int(self.max_seconds * fps):
            raise ClipError(f"the clip is longer than {self.max_seconds:g} s ({frames:.0f} frames at {fps:g} fps; "
                            f"refused {when})")
        if frames > self.max_frames:
            raise ClipError(f"the clip has more than {self.max_frames} frames (max_clip_frames; refused {when})")

    def check_frame(self, width: int, height: int, when: str) -> None:
        if width * height > self.max_frame_pixels or max(width, height) > MAX_SIDE:
            raise ClipError(f"frames of {width}x{height} are larger than accepted ({self.max_frame_pixels} "
                            f"pixels, {MAX_SIDE} px a side; refused {when})")


@dataclass(frozen=True)
class ClipPeak:
    """An event's peak so far: the decoded frame (BGR), its error heatmap in [0, 1], its time in the clip."""

    frame: np.ndarray
    heatmap: np.ndarray
    time: float


@dataclass(frozen=True)
class ClipResult:
    fps: float
    frames: list[dict[str, Any]]  # every frame; metrics are None for the first k (no history yet)
    # the live events' fields (EventPublic's, images aside), times in seconds from the clip's start
    events: list[dict[str, Any]] = field(default_factory=list)
    peaks: dict[str, ClipPeak] = field(default_factory=dict)  # event id -> its peak's images


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

    def __init__(self, predictor: Predictor, lock: threading.Lock, cancel: threading.Event) -> None:
        self._p, self._lock, self._cancel = predictor, lock, cancel
        self.num_frames = predictor.num_frames
        self.config = predictor.config  # the window rule (k, frame_stride) score_frames cuts windows by
        self.calibration = predictor.calibration

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return self._p.preprocess(frame)

    def score(self, windows: np.ndarray) -> FrameScores:
        if self._cancel.is_set():
            raise ClipCancelled("the client went away")
        with self._lock:
            return self._p.score(windows)


def _check_header(cap: cv2.VideoCapture, limits: ClipLimits, fps: float) -> None:
    """Refuse from what the container declares, before a frame is decoded."""
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    limits.check_frame(width, height, "before decoding")
    declared = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    if not math.isfinite(declared) or declared <= 0:
        return  # unknown: decoding counts
    limits.check_length(declared, fps, "before decoding")
    if declared * width * height > limits.max_pixels:
        raise ClipError(f"the clip is larger than accepted: {declared:.0f} frames of {width}x{height} are more "
                        f"than {limits.max_pixels / 1e6:g} megapixels (refused before decoding)")


def score_clip(predictor: Predictor, path: Path, *, alerts: AlertSettings, limits: ClipLimits,
               model_lock: threading.Lock, batch_size: int = 8,
               cancel: threading.Event | None = None) -> ClipResult:
    """Score every frame of the clip at `path`. Raises ClipError when it breaks `limits` (before decoding when
    the header says so, else as soon as decoding passes a limit) and ClipCancelled, at the next frame or batch,
    once `cancel` is set."""
    sniff_container(path)
    cancel = cancel or threading.Event()
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise ClipError("cannot decode the clip (unknown or corrupt video)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if math.isfinite(fps) and 1.0 <= fps <= MAX_FPS else CLIP_FALLBACK_FPS
        _check_header(cap, limits, fps)

        raw: dict[int, np.ndarray] = {}  # decoded frames until scored: the peak's frame is kept for its images

        def frames() -> Iterator[np.ndarray]:
            n = pixels = 0
            while True:
                if cancel.is_set():
                    raise ClipCancelled("the client went away")
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                h, w = frame.shape[:2]
                limits.check_frame(w, h, "while decoding")
                raw[n] = frame
                n += 1
                pixels += w * h
                limits.check_length(n, fps, "while decoding")
                if pixels > limits.max_pixels:
                    raise ClipError(f"the clip is larger than accepted: decoding passed "
                                    f"{limits.max_pixels / 1e6:g} megapixels after {n} frames")
                yield frame

        scorer = _LockedScorer(predictor, model_lock, cancel)
        timeline = ClipAlerts(predictor.calibration, alerts.params(), fps)
        out: list[dict[str, Any]] = []
        events: dict[str, dict[str, Any]] = {}
        peaks: dict[str, ClipPeak] = {}
        # The peak images follow the live recorder: the frame where the smoothed score peaked last goes with the
        # next event message, and an ended event's images do not carry over to the next one.
        peak: ClipPeak | None = None

        def take(updates: list[EventUpdate]) -> None:
            nonlocal peak
            for u in updates:
                events[u.event_id] = clip_event(u)
                if peak is not None:
                    peaks[u.event_id] = peak
                if u.kind == "end":
                    peak = None

        for sf in score_frames(scorer, frames(), batch_size=batch_size, keep_heatmaps=True):
            frame = raw.pop(sf.index)
            row: dict[str, Any] = {"index": sf.index, "time": round(sf.index / fps, 4)}
            if sf.metrics is None:
                row.update(score=None, smoothed=None, **{k: None for k in REPORTED_METRICS})
            else:
                z, updates = timeline.update(sf.index, float(cast(float, sf.metrics["anomaly"])))
                if timeline.engine.peak_changed and sf.heatmap is not None:
                    # the heatmap: a view into the batch's array
                    peak = ClipPeak(frame, sf.heatmap.copy(), timeline.time)
                take(updates)
                row.update(score=z, smoothed=timeline.engine.smoothed,
                           **{k: sf.metrics[k] for k in REPORTED_METRICS})
            out.append(row)
    finally:
        cap.release()
    reason = unscorable(len(out), predictor.num_frames)
    if reason is not None:
        raise ClipError(reason)
    take(timeline.close())
    return ClipResult(fps=fps, frames=out, events=sorted(events.values(), key=lambda e: e["start_ts"]),
                      peaks=peaks)
