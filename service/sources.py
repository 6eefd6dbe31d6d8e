"""Frame sources: what a CaptureWorker reads from. Network cameras are read through PyAV (model.stream), files
and webcams through OpenCV; tests pass a fake factory the way httpx takes a transport."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from model import LiveStream, StreamError, presentation_s, stream_fps

from .settings import CameraSettings
from .urls import SourceSpec, redact_text


class SourceError(RuntimeError):
    """Opening or reading a source failed; the message is already redacted."""


class FrameSource(Protocol):
    fps: float | None  # native frame rate when known
    codec: str | None  # what the frames are coded in, when known
    # A source may also have `pts_s: float | None`, the presentation time of the frame read last (capture
    # decimates live streams on it; see model.clock.StreamClock). Sources without it are timed on arrival.

    def read(self) -> np.ndarray | None:
        """Next BGR frame, None at the end of a file; raises SourceError when the stream fails."""

    def close(self) -> None: ...

    # A file source may also have `rewind() -> bool`: back to its first frame without reopening (a looped file).


SourceFactory = Callable[[SourceSpec, CameraSettings], FrameSource]


class NetworkSource:
    """A network camera: model.LiveStream with the camera's open/read timeouts, errors redacted."""

    def __init__(self, spec: SourceSpec, cam: CameraSettings) -> None:
        url = str(spec.target)
        try:
            # A camera added over the API may not be a playlist: the host policy checked its URL, not the hosts
            # of the segments FFmpeg would fetch.
            self._stream = LiveStream(url, open_timeout_s=cam.open_timeout_s, read_timeout_s=cam.read_timeout_s,
                                      playlists=spec.trusted)
        except StreamError as e:
            raise SourceError(f"{redact_text(str(e))}: {redact_text(url)}") from None
        self.fps: float | None = self._stream.fps
        self.codec: str | None = self._stream.codec
        self.pts_s: float | None = None

    def read(self) -> np.ndarray:
        try:
            frame = self._stream.read()
        except StreamError as e:
            raise SourceError(redact_text(str(e))) from None
        self.pts_s = self._stream.pts_s
        return frame

    def close(self) -> None:
        self._stream.close()


class OpenCVSource:
    """A video file or a webcam through cv2.VideoCapture."""

    def __init__(self, spec: SourceSpec, cam: CameraSettings) -> None:
        import cv2

        self._cv2 = cv2
        self._spec = spec
        cap = cv2.VideoCapture(int(spec.target)) if spec.kind == "webcam" else cv2.VideoCapture(
            str(spec.target), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {spec.kind} source")
        self._cap = cap
        self.fps: float | None = stream_fps(float(cap.get(cv2.CAP_PROP_FPS) or 0.0))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        self.codec: str | None = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip().lower() or None
        self.pts_s: float | None = None

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if ok and frame is not None:
            if self._spec.kind == "webcam":  # a file is timed by its frame count (capture paces it)
                self.pts_s = presentation_s(float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC)))
            return frame
        if self._spec.kind == "file":
            return None
        raise SourceError("webcam read failed")

    def rewind(self) -> bool:
        """Back to a file's first frame (a looped file) without reopening it; False when the seek failed."""
        return self._spec.kind == "file" and bool(self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        self._cap.release()


def open_source(spec: SourceSpec, cam: CameraSettings) -> FrameSource:
    """The default SourceFactory: PyAV for network cameras, OpenCV for files and webcams."""
    return NetworkSource(spec, cam) if spec.kind == "network" else OpenCVSource(spec, cam)
