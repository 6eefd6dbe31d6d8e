"""A learning job's footage recording: the camera's capture tap writes its kept frames into a FootageWriter
(model.footage) until the frame cap, the disk cap or a write error ends it."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import Footage, FootageWriter, ModelConfig


@dataclass(frozen=True)
class Recorded:
    """What a closed recording holds, and why it cannot be learnt from (None: it can be)."""

    frames: int
    segments: int
    stopped: str | None  # why recording ended before the frames wanted (the disk cap, a write error)
    static: str | None  # a frozen or uniform stream (model.footage.motion_check)


class FootageRecording:
    """Frames of one camera into `root`, at most `max_frames` and `max_bytes`. `tap` runs on the capture thread;
    the rest on the learning thread."""

    def __init__(self, root: Path, config: ModelConfig, *, fps: float, max_frames: int, max_bytes: int) -> None:
        self.root = root
        self.writer = FootageWriter(root, config, fps=fps, max_frames=max_frames, max_bytes=max_bytes)
        self.full = False  # the writer refused a frame, or could not write one: recording is over
        self.stopped: str | None = None
        self.lock = threading.Lock()

    @property
    def frames(self) -> int:
        return self.writer.frames

    def tap(self, frame: np.ndarray, ts: float, fresh: bool) -> None:
        """Capture thread: one kept frame of the camera; `fresh`: its history restarted (a reconnect, a gap)."""
        with self.lock:
            if self.full:
                return
            try:
                if fresh:  # no training window may span a gap
                    self.writer.new_segment("history restarted")
                if not self.writer.append(frame, ts):
                    self.full = True
            except OSError as e:  # a full or broken disk ends the recording, never the capture
                self.full, self.stopped = True, f"cannot write footage: {e}"

    def segments(self) -> int:
        with self.lock:
            return self._segments_on_disk() or int(self.writer.frames > 0)

    def _segments_on_disk(self) -> int:
        return len(Footage(self.root).segment_dirs())

    def close(self) -> Recorded:
        with self.lock:
            self.full = True
            with contextlib.suppress(OSError):
                self.writer.close()
            w = self.writer
            stopped = self.stopped
            if stopped is None and w.full_reason is not None and w.full_reason.startswith("disk cap"):
                stopped = f"recording stopped: {w.full_reason}"
            return Recorded(w.frames, self._segments_on_disk(), stopped, w.static_reason)
