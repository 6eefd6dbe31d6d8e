"""InferenceWorker: the one owner of the model. It gathers the newest window of every camera and scores them
in one batched forward (the same `Predictor.score` as `ffp eval`).

Capture never waits for it: each camera has one slot holding its latest unscored window. A live camera
that replaces a window before it was scored counts a skipped frame; a file camera waits for its slot instead.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

import numpy as np

from model import FrameScores

from .frames import Window
from .meters import LatencyMeter, RateMeter

log = logging.getLogger(__name__)

# Called in the inference thread with the batch, its scores and the forward time in ms.
ScoresCallback = Callable[[list[Window], FrameScores, float], None]


class Scorer(Protocol):
    def score(self, windows: np.ndarray) -> FrameScores: ...


class _CameraMeters:
    def __init__(self) -> None:
        self.processed = RateMeter()
        self.skipped = RateMeter()
        self.latency = LatencyMeter()


class InferenceWorker:
    def __init__(self, scorer: Scorer, on_scores: ScoresCallback, *, max_batch: int = 8,
                 max_wait_ms: float = 10.0, model_lock: threading.Lock | None = None) -> None:
        self._scorer = scorer
        self._on_scores = on_scores
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._model_lock = model_lock or threading.Lock()
        self._slots: dict[str, Window] = {}
        self._cameras: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._meters: dict[str, _CameraMeters] = defaultdict(_CameraMeters)
        self.batch_ms = LatencyMeter()
        self.batches = 0
        self.batch_frames = 0
        self.errors = 0

    # -- capture side -------------------------------------------------------------------------------------

    def register(self, camera_id: str) -> None:
        with self._cond:
            self._cameras.add(camera_id)

    def unregister(self, camera_id: str) -> None:
        with self._cond:
            self._cameras.discard(camera_id)
            self._slots.pop(camera_id, None)
            self._meters.pop(camera_id, None)
            self._cond.notify_all()

    def submit(self, window: Window, *, block: bool, stop: threading.Event) -> None:
        """Offer a camera's newest window. block=False replaces an unscored one (counted as skipped)."""
        with self._cond:
            if block:
                while window.camera_id in self._slots and not stop.is_set() and not self._stop.is_set():
                    self._cond.wait(0.1)
                if stop.is_set() or self._stop.is_set():
                    return
            elif window.camera_id in self._slots:
                self._meters[window.camera_id].skipped.add()
            self._slots[window.camera_id] = window
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._slots)

    # -- the thread ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("inference thread did not stop within %.0f s", timeout)
            self._thread = None

    def _take(self) -> list[Window]:
        with self._cond:
            while not self._slots and not self._stop.is_set():
                self._cond.wait(0.2)
            # Give the other cameras max_wait to join this batch, unless every camera is already in.
            deadline = time.monotonic() + self.max_wait_s
            while (not self._stop.is_set() and len(self._slots) < min(self.max_batch, len(self._cameras))
                   and (left := deadline - time.monotonic()) > 0):
                self._cond.wait(left)
            batch = sorted(self._slots.values(), key=lambda w: w.ts)[: self.max_batch]  # oldest first: fair
            for w in batch:
                del self._slots[w.camera_id]
            self._cond.notify_all()  # wakes file cameras waiting for their slot
            return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                continue
            try:
                t0 = time.perf_counter()
                with self._model_lock:
                    scores = self._scorer.score(np.stack([w.data for w in batch]))
                ms = (time.perf_counter() - t0) * 1000
            except Exception:
                self.errors += 1
                log.exception("inference failed on a batch of %d", len(batch))
                continue
            self.batches += 1
            self.batch_frames += len(batch)
            self.batch_ms.add(ms)
            now = time.monotonic()
            for w in batch:
                m = self._meters[w.camera_id]
                m.processed.add(now=now)
                m.latency.add(ms)
            try:
                self._on_scores(batch, scores, ms)
            except Exception:  # a bad listener or a full disk must not kill inference
                log.exception("handling scores failed")

    # -- stats --------------------------------------------------------------------------------------------

    def camera_stats(self, camera_id: str) -> dict[str, object]:
        m = self._meters[camera_id]
        return {"fps_processed": round(m.processed.rate(), 2), "fps_skipped": round(m.skipped.rate(), 2),
                "frames_scored": m.processed.total, "frames_skipped": m.skipped.total,
                "inference_ms": m.latency.summary(), "queued": int(camera_id in self._slots)}

    def stats(self) -> dict[str, object]:
        return {"batches": self.batches, "errors": self.errors,
                "mean_batch_size": round(self.batch_frames / self.batches, 2) if self.batches else None,
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1000,
                "batch_ms": self.batch_ms.summary(), "pending": self.pending()}
