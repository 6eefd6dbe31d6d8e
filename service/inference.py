"""InferenceWorker: the one thread that runs the models. It gathers the oldest queued window of every camera and
scores them with one batched forward per model (the same `Predictor.score` as `ffp eval`): each window carries the
model it was cut for (`Window.model`), so cameras with different models share the thread and a batch round.
Separate forwards, not one stacked forward of same-architecture models: on this CPU four lite models at batch 1
cost 1.1x one shared model at batch 4, against 1.9x for torch.func vmap over stacked weights (eager) and 1.5-1.7x
for one traced U-Net of grouped convolutions (benchmarks/multi_model.py).

Capture never waits for it: each camera has a short queue (`queue_per_camera`, default 2) of unscored
windows. A live camera whose queue is full drops its oldest window (counted as skipped); a file camera waits
for room instead. Two places, not one, absorb a camera's jitter (a late frame followed by an on-time one)
without a drop, while a camera that is really behind still loses its oldest windows. A batch takes at most
one window per camera, oldest first, so every camera gets its turn; each model's forward takes at most max_batch
of them (the oldest), the rest wait for the next round.

A live camera catching up (capture says its frames arrive faster than real time: the second of buffered frames
an RTSP stream delivers at connect, or after the reader fell behind) may queue up to `catch_up_queue_per_camera`
windows for `catch_up_s` after its last such window: the burst is scored, fast-forwarded, rather than dropped.
A camera that is simply too slow for inference gets no such allowance, so its latency stays bounded.

The watchdog restarts the thread when it died or one batch ran longer than `stuck_after_s`. A hung thread is
abandoned, not killed: its batch is dropped when (if) it returns. If the model itself hangs, the replacement
waits for the model lock, is found stuck too, and the restart budget ends in `failed`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Literal

import numpy as np

from model import FrameScores

from .frames import ServedModel, Window
from .meters import LatencyMeter, RateMeter
from .supervised import SupervisedThread

log = logging.getLogger(__name__)

# Called in the inference thread once per forward: its windows (one model's), their scores and the forward time in ms.
ScoresCallback = Callable[[list[Window], FrameScores, float], None]


class _CameraMeters:
    def __init__(self) -> None:
        self.processed = RateMeter()
        self.skipped = RateMeter()
        self.latency = LatencyMeter()


class InferenceWorker(SupervisedThread):
    stop_timeout_s = 30.0  # a batch in flight finishes first

    def __init__(self, on_scores: ScoresCallback, *, max_batch: int = 8,
                 max_wait_ms: float = 10.0, queue_per_camera: int = 2, catch_up_queue_per_camera: int = 24,
                 catch_up_s: float = 3.0, model_lock: threading.Lock | None = None,
                 stuck_after_s: float = 30.0) -> None:
        if queue_per_camera < 1:
            raise ValueError("queue_per_camera must be >= 1")
        super().__init__("inference", kind="inference", thread_name="inference")
        self._on_scores = on_scores
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._model_lock = model_lock or threading.Lock()
        self.queue_per_camera = queue_per_camera
        self.catch_up_queue_per_camera = max(queue_per_camera, catch_up_queue_per_camera)
        self.catch_up_s = catch_up_s
        self._queues: dict[str, deque[Window]] = {}  # camera -> unscored windows, oldest first
        self._catching_up_until: dict[str, float] = {}  # camera -> monotonic end of its catch-up allowance
        self._cameras: set[str] = set()
        self.stuck_after_s = stuck_after_s
        self._busy_since: float | None = None  # monotonic start of the batch in flight (model lock wait included)
        self.state: Literal["stopped", "running", "failed"] = "stopped"
        self._meters: dict[str, _CameraMeters] = defaultdict(_CameraMeters)
        self.batch_ms = LatencyMeter()
        self.batches = 0
        self.batch_frames = 0
        self.errors = 0

    # -- capture side -------------------------------------------------------------------------------------

    def register(self, camera_id: str) -> None:
        with self._lock:
            self._cameras.add(camera_id)

    def unregister(self, camera_id: str) -> None:
        with self._lock:
            self._cameras.discard(camera_id)
            self._queues.pop(camera_id, None)
            self._catching_up_until.pop(camera_id, None)
            self._meters.pop(camera_id, None)
            self._lock.notify_all()

    def submit(self, window: Window, *, block: bool, stop: threading.Event, catching_up: bool = False) -> None:
        """Queue a camera's newest window. block=False drops the oldest queued ones when the queue is full
        (counted as skipped); block=True waits for room. catching_up: the window's frame arrived faster than real
        time, so the camera may queue up to catch_up_queue_per_camera windows for catch_up_s."""
        cid = window.camera_id
        now = time.monotonic()
        with self._lock:
            if block:
                while (len(self._queues.get(cid, ())) >= self.queue_per_camera and not stop.is_set()
                       and not self._stop.is_set()):
                    self._lock.wait(0.1)
                if stop.is_set() or self._stop.is_set():
                    return
            if catching_up and not block:
                self._catching_up_until[cid] = now + self.catch_up_s
            limit = (self.catch_up_queue_per_camera if self._catching_up_until.get(cid, 0.0) > now
                     else self.queue_per_camera)
            q = self._queues.setdefault(cid, deque())
            while len(q) >= limit:
                q.popleft()
                self._meters[cid].skipped.add()
            q.append(window)
            self._lock.notify_all()

    def drop_stale(self, camera_id: str, model: ServedModel) -> int:
        """Forget the camera's queued windows cut for another model than `model` (its model was swapped);
        returns how many. Not counted as skipped: nothing fell behind."""
        with self._lock:
            q = self._queues.get(camera_id)
            if not q:
                return 0
            keep = [w for w in q if w.model is model]
            dropped = len(q) - len(keep)
            q.clear()
            q.extend(keep)
            self._lock.notify_all()
            return dropped

    def pending(self) -> int:
        """Unscored windows queued, all cameras."""
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    # -- lifecycle (stop, request_stop: SupervisedThread) -------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self.state = "running"
                self._spawn()

    def _on_stopped(self) -> None:
        self._busy_since, self.state = None, "stopped"

    # -- watchdog (diagnose, restart, fail: SupervisedThread) ---------------------------------------------

    def _active(self) -> bool:
        return self.state == "running"

    def _health(self, now_mono: float) -> str | None:
        busy = self._busy_since
        if busy is not None and now_mono - busy > self.stuck_after_s:
            return f"stuck: one batch running for {now_mono - busy:.1f} s"
        return None

    def _on_restart(self, reason: str) -> None:
        self.last_error = reason
        self._busy_since = None  # the fresh thread has no batch in flight

    def _on_fail(self, reason: str) -> None:
        """No more scoring; stats say 'failed' with the reason."""
        self.state, self.last_error = "failed", f"failed: {reason}"

    # -- the thread ---------------------------------------------------------------------------------------

    def _take(self, cancel: threading.Event) -> list[Window]:
        with self._lock:
            def ready() -> list[deque[Window]]:
                return [q for q in self._queues.values() if q]

            while not ready() and not cancel.is_set():
                self._lock.wait(0.2)
            # Give the other cameras max_wait to join this batch, unless every camera is already in.
            deadline = time.monotonic() + self.max_wait_s
            while (not cancel.is_set() and len(ready()) < min(self.max_batch, len(self._cameras))
                   and (left := deadline - time.monotonic()) > 0):
                self._lock.wait(left)
            if cancel.is_set():
                return []
            per_model: dict[ServedModel, int] = defaultdict(int)
            batch = []
            for q in sorted(ready(), key=lambda q: q[0].ts):  # oldest first: fair
                if per_model[q[0].model] < self.max_batch:
                    per_model[q[0].model] += 1
                    batch.append(q.popleft())
            if batch:
                self._busy_since = time.monotonic()
            self._lock.notify_all()  # wakes file cameras waiting for room in their queue
            return batch

    def _run(self, cancel: threading.Event) -> None:
        try:
            while not cancel.is_set():
                batch = self._take(cancel)
                if batch:
                    self._process(batch, cancel)
                    with self._lock:
                        if not cancel.is_set():
                            self._busy_since = None
        except Exception as e:  # a bug: log it; the watchdog sees a dead thread and restarts it
            log.exception("inference thread crashed")
            with self._lock:
                if not cancel.is_set():
                    self.last_error = f"internal error: {type(e).__name__}: {e}"

    def _process(self, batch: list[Window], cancel: threading.Event) -> None:
        """One forward per model, in the order of each model's oldest window."""
        groups: dict[ServedModel, list[Window]] = {}
        for w in batch:
            groups.setdefault(w.model, []).append(w)
        for model, windows in groups.items():
            if cancel.is_set():
                return
            self._forward(model, windows, cancel)

    def _forward(self, model: ServedModel, batch: list[Window], cancel: threading.Event) -> None:
        try:
            t0 = time.perf_counter()
            with self._model_lock:
                scores = model.scorer.score(np.stack([w.data for w in batch]))
            ms = (time.perf_counter() - t0) * 1000
        except Exception:  # one bad batch is counted, not fatal
            self.errors += 1
            log.exception("inference failed on a batch of %d (model %s)", len(batch), model.version)
            return
        if cancel.is_set():
            return  # abandoned by the watchdog while it hung: a fresh thread has taken over
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
                "inference_ms": m.latency.summary(), "queued": len(self._queues.get(camera_id, ()))}

    def stats(self) -> dict[str, object]:
        return {"state": self.state, "restarts": self.restarts, "last_error": self.last_error,
                "batches": self.batches, "errors": self.errors,
                "mean_batch_size": round(self.batch_frames / self.batches, 2) if self.batches else None,
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait_s * 1000,
                "queue_per_camera": self.queue_per_camera,
                "catch_up_queue_per_camera": self.catch_up_queue_per_camera,
                "batch_ms": self.batch_ms.summary(), "pending": self.pending()}
