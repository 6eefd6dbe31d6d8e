"""EventRecorder: turns alert engines' event updates into stored events with their images, and applies retention.

Per camera it keeps the frame and heatmap of the event's peak so far; the images are written (atomically) only
when the peak changed since the last write, then the event row and its log entry go to the store, which hands
back the message with its seq. Retention runs at start and at most every `retention_every_s` after that.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model import EventUpdate

from .frames import Event, EventMessage
from .snapshots import event_images, unix_caption, write_event_images
from .store import EventStore

log = logging.getLogger(__name__)
RETENTION_EVERY_S = 60.0


class _Peak:
    """One camera's peak images: the latest (frame, heatmap), whether they are unwritten, and where they went."""

    def __init__(self) -> None:
        self.images: tuple[np.ndarray, np.ndarray] | None = None
        self.dirty = False
        self.paths: tuple[str | None, str | None] = (None, None)


class EventRecorder:
    def __init__(self, store: EventStore, data_dir: Path, *, max_events: int | None, max_age_days: float | None,
                 retention_every_s: float = RETENTION_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """data_dir: event images go to data_dir/events/<camera>/ (stored relative to data_dir)."""
        self.store = store
        self.data_dir = Path(data_dir)
        self.max_events = max_events
        self.max_age_s = None if max_age_days is None else max_age_days * 86400
        self.retention_every_s = retention_every_s
        self._monotonic = monotonic
        self._last_retention = 0.0
        self._peaks: dict[str, _Peak] = {}
        self._lock = threading.Lock()  # the peaks of every camera: inference records while stop/remove close

    def start(self) -> None:
        """Startup repair: close events a crash left open, then apply retention."""
        self.store.close_dangling()
        self.apply_retention(force=True)

    def set_peak(self, camera_id: str, frame: np.ndarray, heatmap: np.ndarray) -> None:
        """The camera's score peaked at this frame: its images are written with the next record()."""
        with self._lock:
            peak = self._peaks.setdefault(camera_id, _Peak())
            peak.images, peak.dirty = (frame, heatmap.copy()), True  # heatmap: a view into the batch's array

    def record(self, u: EventUpdate) -> EventMessage:
        """Write the peak images if they changed, then the event row and its log entry (gets the seq)."""
        with self._lock:
            peak = self._peaks.setdefault(u.camera_id, _Peak())
            if peak.dirty and peak.images is not None:
                try:
                    peak.paths = self._write_images(u.camera_id, u.event_id, u.peak_ts, *peak.images)
                except OSError:
                    log.exception("camera %s: cannot write event images", u.camera_id)
                peak.dirty = False
            ev = Event(u.event_id, u.camera_id, u.start_ts, u.end_ts, u.peak_score, u.peak_ts, peak.paths[0],
                       peak.paths[1], u.frames, u.type)
            if u.kind == "end":
                peak.images, peak.paths = None, (None, None)
            return self.store.record(u.kind, ev)

    def forget(self, camera_id: str) -> None:
        """Drop a removed camera's peak images (its events are closed already)."""
        with self._lock:
            self._peaks.pop(camera_id, None)

    def _write_images(self, camera_id: str, event_id: str, peak_ts: float, frame: np.ndarray,
                      heatmap: np.ndarray) -> tuple[str, str]:
        snap, heat = event_images(frame, heatmap, unix_caption(camera_id, peak_ts))
        rel = Path("events") / camera_id
        snap_name, heat_name = write_event_images(self.data_dir / rel, event_id, snap, heat)
        return str(rel / snap_name), str(rel / heat_name)

    def apply_retention(self, *, force: bool = False) -> None:
        """Delete events beyond the limits, unless that was done less than retention_every_s ago."""
        now = self._monotonic()
        if not force and now - self._last_retention < self.retention_every_s:
            return
        self._last_retention = now
        self.store.apply_retention(max_events=self.max_events, max_age_s=self.max_age_s)
