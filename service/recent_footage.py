"""A camera's recent clean footage: what its model is refreshed from (service.refresh).

While a camera is armed with its own model and `learning.refresh_days` is set, its kept frames are recorded into
data_dir/cameras/{id}/recent/, a rolling window (model.footage's FootageWriter, `rolling`): at footage_minutes of
frames and one chunk more, or at the disk cap, the oldest chunk is deleted (so a full window holds at least
footage_minutes). Frames during an anomaly alert or a scene change, and `refresh_margin_s` before and after one,
are left out, and a new segment starts after each left-out stretch, so that no training window spans one.

An alert is known only after the fact: an anomaly event starts at its first crossing but is raised up to
min_duration later, a scene change scene.hold_s later, both after the frame was scored. So frames wait in memory
(as the model's small input images) until the camera's scores have reached `hold_s` past them, hold_s being the margin
plus the longest of those delays plus a second; then they are written, or dropped when an exclusion covers them.
A frame whose score never comes (inference far behind) is dropped once `max_pending` frames wait. A frame
whose window inference dropped (the queue full) has no score of its own, but a later window's score moves the
horizon past it and it counts as clean: an alert then would have been raised from the windows around it, and the
margin covers those.

A write error (a full or broken disk) is kept in `error` and the frames are dropped until the learning thread's
next `recover()` opens a new writer on the window (a new segment); the error stays until a frame is written
again. After `close()` the inputs are ignored: capture may tap a frame after the service stopped its recording.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import FootageWriter, ModelConfig

CHUNK_FRAMES = 50  # frames per chunk file: the unit the rolling window drops


@dataclass
class _Pending:
    ts: float
    img: np.ndarray
    fresh: bool  # the camera's history restarted at this frame (a reconnect, a gap)


class CleanFootage:
    """Rolling recent footage of one camera without its alerts. `tap` runs on the capture thread, `scored` and
    `exclude` on the inference thread, the rest on the learning thread; one lock guards it all."""

    def __init__(self, root: Path, config: ModelConfig, *, fps: float, max_frames: int, max_bytes: int,
                 margin_s: float, hold_s: float) -> None:
        self.root, self.config, self.fps = root, config, fps
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self.margin_s, self.hold_s = margin_s, hold_s
        self.max_pending = max(1, math.ceil((hold_s + 30.0) * fps))
        self.lock = threading.Lock()
        self.writer = self._open()
        self._pending: deque[_Pending] = deque()
        self._scored_until = -math.inf
        self._exclusions: dict[str, tuple[float, float]] = {}  # event id -> (from, to): to is inf while open
        self._cut = False  # a frame was left out: the next written one starts a new segment
        self.excluded = 0  # frames left out for an alert or a scene change (with the margins)
        self.error: str | None = None  # the last write error, until a frame is written again
        self._broken = False  # the writer failed: frames are dropped until recover() opens a new one
        self._closed = False

    def _open(self) -> FootageWriter:
        return FootageWriter(self.root, self.config, fps=self.fps, max_frames=self.max_frames,
                             max_bytes=self.max_bytes, rolling=True,
                             chunk_frames=max(1, min(CHUNK_FRAMES, self.max_frames // 4)))

    # -- inputs ---------------------------------------------------------------------------------------------

    def tap(self, frame: np.ndarray, ts: float, fresh: bool) -> None:
        """Capture thread: one kept frame (resized here: the frames waiting are small)."""
        if self._closed:
            return
        img = self.writer.prepare(frame)
        with self.lock:
            if self._closed:
                return
            self._pending.append(_Pending(ts, img, fresh))
            while len(self._pending) > self.max_pending:
                self._pending.popleft()  # its score never came: not known to be clean
                self._cut = True
            self._commit()

    def scored(self, ts: float) -> None:
        """Inference thread: the camera's window ending at frame time `ts` was scored."""
        with self.lock:
            if self._closed:
                return
            self._scored_until = max(self._scored_until, ts)
            self._commit()

    def exclude(self, event_id: str, start_ts: float, end_ts: float | None) -> None:
        """Inference thread: an alert or scene change (start, update or end): its frames, with the margins, are
        left out."""
        with self.lock:
            if self._closed:
                return
            hi = math.inf if end_ts is None else end_ts + self.margin_s
            self._exclusions[event_id] = (start_ts - self.margin_s, hi)

    # -- writing --------------------------------------------------------------------------------------------

    def _excluded(self, ts: float) -> bool:
        return any(lo <= ts <= hi for lo, hi in self._exclusions.values())

    def _commit(self) -> None:
        limit = self._scored_until - self.hold_s
        while self._pending and self._pending[0].ts <= limit:
            p = self._pending.popleft()
            if self._excluded(p.ts):
                self.excluded += 1
                self._cut = True
                continue
            if self._broken:
                self._cut = True
                continue
            try:
                if p.fresh or self._cut:
                    self.writer.new_segment("history restarted" if p.fresh else "an alert left out")
                    self._cut = False
                self.writer.append_prepared(p.img, p.ts)
                self.error = None
            except OSError as e:  # a full or broken disk pauses the recording (see recover), never the capture
                self.error, self._broken, self._cut = f"cannot write recent footage: {e}", True, True
                with contextlib.suppress(OSError):
                    self.writer.close()
        oldest = self._pending[0].ts if self._pending else limit
        self._exclusions = {k: v for k, v in self._exclusions.items() if v[1] >= oldest}

    # -- the learning thread --------------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        with self.lock:
            return self.writer.frames

    def enough(self) -> bool:
        """The window is full: footage_minutes of clean frames, or as many as the disk cap holds."""
        with self.lock:
            return self.writer.frames >= self.max_frames or self.writer.dropped > 0

    def recover(self) -> None:
        """After a write error: a new writer on the window (what is on disk stays), tried again at each call while
        it cannot be opened."""
        with self.lock:
            if not self._broken or self._closed:
                return
            try:
                self.writer = self._open()
            except OSError as e:
                self.error = f"cannot write recent footage: {e}"
                return
            self._broken = False

    def rotate(self, dest: Path) -> int:
        """Move the footage recorded so far to `dest` (a refresh's run) and go on in an empty window; frames still
        waiting go into the new one. Returns the frames moved."""
        with self.lock:
            with contextlib.suppress(OSError):
                self.writer.close()
            frames = self.writer.frames
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self.root.is_dir():
                os.replace(self.root, dest)
            self.error, self._broken = None, False
            self.writer = self._open()
            self._cut = False
            return frames

    def close(self, *, remove: bool = False) -> None:
        """Write what is on disk whole (the frames still waiting are lost: a restart is a gap); `remove`: delete
        the footage too (its camera lost its own model)."""
        with self.lock:
            self._closed = True
            with contextlib.suppress(OSError):
                self.writer.close()
            self._pending.clear()
            if remove:
                shutil.rmtree(self.root, ignore_errors=True)
