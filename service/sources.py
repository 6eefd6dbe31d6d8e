"""Frame sources: what a CaptureWorker reads from. The default opens OpenCV's FFmpeg backend; tests pass a
fake factory the way httpx takes a transport."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import numpy as np

from model import presentation_s, stream_fps

from .settings import CameraSettings
from .urls import SourceSpec, redact_text


class SourceError(RuntimeError):
    """Opening or reading a source failed; the message is already redacted."""


class FrameSource(Protocol):
    fps: float | None  # native frame rate when known
    # A source may also have `pts_s: float | None`, the presentation time of the frame read last (capture
    # decimates live streams on it; see model.clock.StreamClock). Sources without it are timed on arrival.

    def read(self) -> np.ndarray | None:
        """Next BGR frame, None at the end of a file; raises SourceError when the stream fails."""

    def close(self) -> None: ...

    # A file source may also have `rewind() -> bool`: back to its first frame without reopening (a looped file).


SourceFactory = Callable[[SourceSpec, CameraSettings], FrameSource]


class OpenCVSource:
    """cv2.VideoCapture with explicit open/read timeouts (OpenCV's defaults block ~30-90 s on a dead camera)."""

    def __init__(self, spec: SourceSpec, cam: CameraSettings) -> None:
        import cv2

        self._cv2 = cv2
        self._spec = spec
        if spec.kind == "webcam":
            cap = cv2.VideoCapture(int(spec.target))
        else:
            # RTSP over TCP: UDP loses packets under load and smears frames. OpenCV reads this variable at
            # each open, so it is the only per-process knob; a value the operator set wins.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cam.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cam.read_timeout_s * 1000)]
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {spec.kind} source" + (
                f" {redact_text(str(spec.target))}" if spec.kind != "file" else ""))
        self._cap = cap
        self.fps: float | None = stream_fps(float(cap.get(cv2.CAP_PROP_FPS) or 0.0))
        self.pts_s: float | None = None

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if ok and frame is not None:
            if self._spec.kind != "file":  # a file is timed by its frame count (capture paces it)
                self.pts_s = presentation_s(float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC)))
            return frame
        if self._spec.kind == "file":
            return None
        raise SourceError("stream read failed (disconnected or timed out)")

    def rewind(self) -> bool:
        """Back to a file's first frame (a looped file): seeking, not reopening, because OpenCV opens every
        FFmpeg source under one process-wide lock, which a network camera's open holds for up to its
        open_timeout_s (a frozen server): a reopen would wait for it. False when the seek failed."""
        return self._spec.kind == "file" and bool(self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        self._cap.release()


def open_opencv_source(spec: SourceSpec, cam: CameraSettings) -> FrameSource:
    return OpenCVSource(spec, cam)
