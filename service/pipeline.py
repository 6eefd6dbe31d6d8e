"""Pipeline: builds and owns capture workers, the inference worker, alert engines and the watchdog, and
routes scores to the event recorder and the listeners. The API codes against this class.

capture (thread per camera) -> ring -> inference (one batched forward per model) -> alerts -> recorder -> listeners
The watchdog supervises every enabled camera's capture and the inference worker (restarts, budget, failed).

Every camera is scored by one model: the shipped predictor, or one of its own from the model registry. A camera's
model is swapped live (`set_camera_model`, `activate_model`): the other cameras never notice, and the camera's
windows cut for the old model are dropped, not scored into the new model's calibration.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model import AlertEngine, CameraCalibration, FrameScores, Predictor, WeightsError, sha256_file

from .capture import CaptureWorker
from .clips import ClipError, ClipLimits, ClipResult, score_clip
from .frames import (
    REPORTED_METRICS,
    SHIPPED,
    CameraStatus,
    EventMessage,
    ModelStatus,
    ScoreMessage,
    ServedModel,
    Window,
)
from .inference import InferenceWorker
from .recorder import EventRecorder
from .registry import ModelRegistry
from .ring import RingBuffer
from .settings import AlertSettings, CameraSettings, Settings
from .sources import SourceFactory, open_opencv_source
from .store import EventStore
from .urls import redact_url, resolve_source
from .watchdog import Supervised, Watchdog

__all__ = ["CameraExists", "CameraLimit", "ClipError", "ClipResult", "Pipeline"]
log = logging.getLogger(__name__)
Listener = Callable[[ScoreMessage | EventMessage], None]
BatchListener = Callable[[int, float], None]  # (windows in the batch, forward time in ms): inference thread


class CameraExists(Exception):
    """A camera with this id is already running (the API answers 409)."""


class CameraLimit(Exception):
    """The service runs max_cameras cameras already (the API answers 409)."""


class _Camera:
    """One camera's parts; `lock` guards its model, calibration and alert engine (inference vs stop/remove/swap)."""

    def __init__(self, cam: CameraSettings, worker: CaptureWorker, model: ServedModel,
                 calibration: CameraCalibration, engine: AlertEngine) -> None:
        self.cam, self.worker, self.model, self.calibration, self.engine = cam, worker, model, calibration, engine
        self.model_error: str | None = None  # why the last model change failed
        self.lock = threading.Lock()
        self.scored: tuple[np.ndarray, np.ndarray] | None = None  # (raw frame, heatmap) scored last


class Pipeline:
    def __init__(self, settings: Settings, predictor: Predictor, store: EventStore, *,
                 clock: Callable[[], float] = time.time,
                 source_factory: SourceFactory = open_opencv_source) -> None:
        self.settings, self.predictor, self.store = settings, predictor, store
        self.shipped = ServedModel(predictor, SHIPPED, sha256_file(predictor.path) if predictor.path else None)
        self.registry = ModelRegistry(settings.data_dir)
        self._recorder = EventRecorder(store, settings.data_dir, max_events=settings.retention_max_events,
                                       max_age_days=settings.retention_days)
        self._clock = clock
        self._factory = source_factory
        self._model_lock = threading.Lock()  # live batches and clip batches never run the model at once
        wd = settings.watchdog
        self._inference = InferenceWorker(self._on_scores, max_batch=settings.inference.max_batch,
                                          max_wait_ms=settings.inference.max_wait_ms,
                                          queue_per_camera=settings.inference.queue_per_camera,
                                          catch_up_queue_per_camera=settings.inference.catch_up_queue_per_camera,
                                          catch_up_s=settings.inference.catch_up_s,
                                          model_lock=self._model_lock,
                                          stuck_after_s=wd.inference_stuck_after_s)
        self._cams: dict[str, _Camera] = {}
        self._cams_lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._batch_listeners: list[BatchListener] = []
        self._listeners_lock = threading.Lock()
        self._watchdog = Watchdog(self._supervised, interval_s=wd.interval_s, max_restarts=wd.max_restarts,
                                  window_s=wd.restart_window_s)
        self._started = False
        self._started_at: float | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started, self._started_at = True, time.monotonic()
        self._recorder.start()
        self._inference.start()
        for cam in self.settings.cameras:
            if cam.id not in self._cams:
                self.add_camera(cam, trusted=True)
        with self._cams_lock:
            for c in self._cams.values():
                if c.cam.enabled:
                    c.worker.start()
        self._watchdog.start()

    def stop(self) -> None:
        if not self._started:
            return
        self._watchdog.stop()
        with self._cams_lock:
            cams = list(self._cams.values())
        for c in cams:  # signal every camera first, then join: a slow source does not delay the others
            c.worker.request_stop()
        for c in cams:
            c.worker.stop()
        self._inference.stop()
        now = self._clock()
        for c in cams:
            self._close_events(c, now)
        self._started = False

    # -- cameras ------------------------------------------------------------------------------------------

    def add_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus:
        """Untrusted (API) cameras count against max_cameras; trusted ones (the settings file) are not refused."""
        spec = resolve_source(cam.url, trusted=trusted, media_dir=self.settings.media_dir)  # ValueError -> 422
        model, error = self._registered_model(cam.id)
        with self._cams_lock:
            if cam.id in self._cams:
                raise CameraExists(f"camera {cam.id!r} already exists")
            if not trusted and len(self._cams) >= self.settings.max_cameras:
                raise CameraLimit(f"the service runs {len(self._cams)} cameras, the limit (max_cameras)")
            cfg = model.scorer.config
            ring = RingBuffer(cam.id, cfg.num_frames, cfg.frame_stride)
            worker = CaptureWorker(cam, spec, ring, model, self._inference, source_factory=self._factory,
                                   clock=self._clock)
            alerts = cam.alert_settings(self.settings.alerts).params()
            calibration = CameraCalibration(model.scorer.calibration, alerts)
            self._cams[cam.id] = c = _Camera(cam, worker, model, calibration, AlertEngine(cam.id, alerts))
            c.model_error = error
            self._inference.register(cam.id)
            if self._started and cam.enabled:
                worker.start()
        log.info("camera %s added (%s)", cam.id, redact_url(cam.url))
        return self.get_camera(cam.id)

    def _registered_model(self, camera_id: str) -> tuple[ServedModel, str | None]:
        """The camera's active model in the registry (a restart keeps it), else the shipped one; with the reason
        when its active model cannot be loaded."""
        try:
            entry = self.registry.active(camera_id)
            if entry is None:
                return self.shipped, None
            return ServedModel(self._load(camera_id, entry.version), entry.version, entry.sha256), None
        except WeightsError as e:
            log.error("camera %s: its model cannot be loaded, scoring with the shipped one: %s", camera_id, e)
            return self.shipped, f"{e}; scoring with the shipped model"

    def _load(self, camera_id: str, version: str) -> Predictor:
        precision = None if self.settings.precision == "auto" else self.settings.precision
        return self.registry.load(camera_id, version, device=str(self.predictor.device), precision=precision)

    def set_camera_model(self, camera_id: str, predictor: Predictor | None, *, version: str = "custom",
                         sha256: str | None = None) -> ModelStatus:
        """Score the camera with `predictor` from its next window on (None: the shipped model), without a restart.
        Other cameras keep every window. This camera's windows cut for the old model are dropped; its history
        restarts when the new model preprocesses or cuts windows differently; its alerts use the new model's
        calibration (with the camera's warm-up, if set) and an open event ends. KeyError for an unknown camera."""
        with self._cams_lock:
            c = self._cams[camera_id]
        if predictor is None:
            model = self.shipped
        else:
            if sha256 is None and predictor.path is not None:
                sha256 = sha256_file(predictor.path)
            model = ServedModel(predictor, version, sha256)
        alerts = c.cam.alert_settings(self.settings.alerts).params()
        with c.lock:
            ended = [self._recorder.record(u) for u in c.engine.close(self._clock())]
            c.model, c.model_error = model, None
            c.calibration = CameraCalibration(model.scorer.calibration, alerts)
            c.engine = AlertEngine(camera_id, alerts)
        c.worker.set_model(model)
        self._inference.drop_stale(camera_id, model)
        for m in ended:
            self._emit(m)
        log.info("camera %s: scoring with model %s", camera_id, model.version)
        return self._model_status(c)

    def activate_model(self, camera_id: str, version: str | None) -> ModelStatus:
        """Load the camera's registry version (its sha256 verified), swap it in and make it the active one; None:
        back to the shipped model. A version that cannot be loaded raises WeightsError and changes nothing: the
        camera keeps its model and its status says why. KeyError: unknown camera or version."""
        with self._cams_lock:
            c = self._cams[camera_id]
        if version is None:
            self.registry.activate(camera_id, None)
            return self.set_camera_model(camera_id, None)
        entry = self.registry.entry(camera_id, version)
        try:
            predictor = self._load(camera_id, entry.version)
        except WeightsError as e:
            with c.lock:
                c.model_error = f"model {entry.version} not loaded: {e}"
            log.error("camera %s: %s", camera_id, c.model_error)
            raise
        self.registry.activate(camera_id, entry.version)
        return self.set_camera_model(camera_id, predictor, version=entry.version, sha256=entry.sha256)

    @staticmethod
    def _model_status(c: _Camera) -> ModelStatus:
        m = c.model
        return ModelStatus(m.version, None if m.sha256 is None else m.sha256[:12], c.model_error)

    def remove_camera(self, camera_id: str) -> None:
        with self._cams_lock:
            c = self._cams.pop(camera_id)  # KeyError -> 404
        c.worker.stop()
        self._inference.unregister(camera_id)
        self._close_events(c, self._clock())
        self._recorder.forget(camera_id)
        log.info("camera %s removed", camera_id)

    def get_camera(self, camera_id: str) -> CameraStatus:
        with self._cams_lock:
            c = self._cams[camera_id]
        w = c.worker
        inf = self._inference.camera_stats(camera_id)
        age = w.frame_age()
        state = w.state if self._started or w.state != "connecting" else "stopped"
        if not c.cam.enabled:
            state = "stopped"
        return CameraStatus(
            id=camera_id, url=redact_url(c.cam.url), state=state, fps_target=c.cam.fps, reconnects=w.reconnects,
            stalls=w.stalls, restarts=w.restarts, last_frame_age_s=None if age is None else round(age, 3),
            last_error=w.last_error, frames_captured=w.frames_captured,
            frames_scored=int(inf["frames_scored"]), frames_skipped=int(inf["frames_skipped"]),  # type: ignore[call-overload]
            history_resets=w.history_resets, on_threshold=c.engine.params.on_threshold, model=self._model_status(c))

    def latest_frame(self, camera_id: str) -> np.ndarray | None:
        """The camera's last decoded frame (BGR), None before its first one; KeyError for an unknown id."""
        with self._cams_lock:
            c = self._cams[camera_id]
        return c.worker.latest_frame

    def latest_scored(self, camera_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(frame, error heatmap in [0, 1]) of the camera's last scored window: a pair that belongs together,
        a little behind latest_frame. None before the first score; KeyError for an unknown id."""
        with self._cams_lock:
            c = self._cams[camera_id]
        return c.scored

    def list_cameras(self) -> list[CameraStatus]:
        with self._cams_lock:
            ids = sorted(self._cams)
        out = []
        for i in ids:
            try:
                out.append(self.get_camera(i))
            except KeyError:  # removed meanwhile
                pass
        return out

    def stats(self) -> dict[str, object]:
        cams: dict[str, object] = {}
        with self._cams_lock:
            items = list(self._cams.items())
        for cid, c in items:
            st = self.get_camera(cid)
            cams[cid] = {**st.to_dict(), "fps_captured": round(c.worker.captured_rate.rate(), 2),
                         "fps_read": round(c.worker.read_rate.rate(), 2), **self._inference.camera_stats(cid),
                         "ring": len(c.worker.ring), "event_active": c.engine.active}
        up = None if self._started_at is None else round(time.monotonic() - self._started_at, 1)
        return {"uptime_s": up, "running": self._started, "cameras": cams, "inference": self._inference.stats(),
                "device": str(self.predictor.device), "precision": self.predictor.precision,
                "torch_threads": torch.get_num_threads(),
                "calibrated": self.predictor.calibration is not None, "last_event_seq": self.store.last_seq()}

    def _supervised(self) -> list[Supervised]:
        with self._cams_lock:
            workers: list[Supervised] = [c.worker for c in self._cams.values() if c.cam.enabled]
        return [self._inference, *workers]

    # -- listeners ----------------------------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        with self._listeners_lock:
            self._listeners.append(fn)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)
        return unsubscribe

    def add_batch_listener(self, fn: BatchListener) -> Callable[[], None]:
        with self._listeners_lock:
            self._batch_listeners.append(fn)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if fn in self._batch_listeners:
                    self._batch_listeners.remove(fn)
        return unsubscribe

    def _emit(self, msg: ScoreMessage | EventMessage) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(msg)
            except Exception:  # one bad subscriber must not starve the others or the pipeline
                log.exception("listener failed")

    # -- scores -> alerts -> events (inference thread) ----------------------------------------------------

    def _on_scores(self, batch: list[Window], scores: FrameScores, ms: float) -> None:
        with self._listeners_lock:
            batch_listeners = list(self._batch_listeners)
        for fn in batch_listeners:
            try:
                fn(len(batch), ms)
            except Exception:  # metrics must not stop scoring
                log.exception("batch listener failed")
        for i, w in enumerate(batch):
            with self._cams_lock:
                c = self._cams.get(w.camera_id)
            if c is None:
                continue  # removed while its window was in flight
            with c.lock:
                if w.model is not c.model:
                    continue  # cut for the camera's previous model: its scores are not this calibration's
                z = c.calibration.z(float(scores.anomaly[i]), w.ts)
                updates = c.engine.update(z, w.ts)
                if c.engine.peak_changed:
                    self._recorder.set_peak(w.camera_id, w.frame, scores.heatmap[i])
                smoothed = c.engine.smoothed
                c.scored = (w.frame, scores.heatmap[i].copy())
                events = [self._recorder.record(u) for u in updates]
            metrics = {k: float(getattr(scores, k)[i]) for k in REPORTED_METRICS}
            self._emit(ScoreMessage(w.camera_id, w.frame_index, w.ts, z, smoothed, metrics,
                                    round((self._clock() - w.ts) * 1000, 2), w.model.version))
            for m in events:
                self._emit(m)
            if any(u.kind == "end" for u in updates):
                self._recorder.apply_retention()

    def _close_events(self, c: _Camera, now: float) -> None:
        with c.lock:
            msgs = [self._recorder.record(u) for u in c.engine.close(now)]
        for m in msgs:
            self._emit(m)

    # -- clips --------------------------------------------------------------------------------------------

    def score_clip(self, path: Path, *, alerts: AlertSettings | None = None,
                   cancel: threading.Event | None = None) -> ClipResult:
        """Score an uploaded clip with the live model (batches interleave with live inference) within the clip
        limits of the settings; setting `cancel` stops it at the next frame or batch (ClipCancelled)."""
        return score_clip(self.predictor, Path(path), alerts=alerts or self.settings.alerts,
                          limits=ClipLimits.from_settings(self.settings), model_lock=self._model_lock,
                          batch_size=self.settings.inference.max_batch, cancel=cancel)
