"""Pipeline: builds and owns the cameras (capture workers), the inference worker, the alerting and the watchdog,
and keeps the cameras' models. The API codes against this class.

capture (thread per camera) -> ring -> inference (one batched forward per model) -> alerting (service.alerting:
alerts, scene changes) -> recorder -> listeners (service.listeners)
The watchdog supervises every enabled camera's capture and the inference worker (restarts, budget, failed).

Every camera is scored by one model: the shipped predictor, or one of its own from the model registry. A camera's
model is swapped live (`set_camera_model`, `activate_model`): the other cameras never notice, and the camera's
windows cut for the old model are dropped, not scored into the new model's calibration.

A camera without a model of its own that does not opt into the shipped one (`use_shipped: false`) is unarmed:
its scores are published with armed=false and feed no alert. Its learning (service.learning) records its
footage through a tap on its capture and trains its own model; the camera's mode says where it stands.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model import Predictor

from .alerting import Alerting
from .camera_models import CameraModels
from .capture import CaptureWorker, FrameTap
from .clips import ClipError, ClipLimits, ClipResult, score_clip
from .frames import SHIPPED, CameraMessage, CameraMode, CameraStatus, ModelStatus
from .inference import InferenceWorker
from .learning import Learning, LearningBusy
from .learning_job import IN_LINE
from .listeners import BatchListener, Listener, Listeners, RelearnHook
from .live_camera import LiveCamera
from .recorder import EventRecorder
from .registry import ModelEntry, ModelRegistry
from .ring import RingBuffer
from .settings import AlertSettings, CameraSettings, Settings
from .sources import SourceFactory, open_source
from .store import EventStore
from .urls import SourceSpec, redact_url, resolve_source
from .watchdog import Supervised, Watchdog

__all__ = ["CameraExists", "CameraLimit", "ClipError", "ClipResult", "Pipeline"]
log = logging.getLogger(__name__)


class CameraExists(Exception):
    """A camera with this id is already running (the API answers 409)."""


class CameraLimit(Exception):
    """The service runs max_cameras cameras already (the API answers 409)."""


class Pipeline:
    def __init__(self, settings: Settings, predictor: Predictor, store: EventStore, *,
                 clock: Callable[[], float] = time.time,
                 source_factory: SourceFactory = open_source) -> None:
        self.settings, self.predictor, self.store = settings, predictor, store
        self.registry = ModelRegistry(settings.data_dir)
        self._recorder = EventRecorder(store, settings.data_dir, max_events=settings.retention_max_events,
                                       max_age_days=settings.retention_days)
        self._clock = clock
        self._factory = source_factory
        self._model_lock = threading.Lock()  # live batches and clip batches never run the model at once
        self._listeners = Listeners()
        self._alerting = Alerting(settings, self._recorder, self._listeners, camera=self._camera, clock=clock)
        wd = settings.watchdog
        self._inference = InferenceWorker(self._alerting.on_scores, max_batch=settings.inference.max_batch,
                                          max_wait_ms=settings.inference.max_wait_ms,
                                          queue_per_camera=settings.inference.queue_per_camera,
                                          catch_up_queue_per_camera=settings.inference.catch_up_queue_per_camera,
                                          catch_up_s=settings.inference.catch_up_s,
                                          model_lock=self._model_lock,
                                          stuck_after_s=wd.inference_stuck_after_s)
        self._cams: dict[str, LiveCamera] = {}
        self._taps: dict[str, FrameTap] = {}  # footage recorders, by camera: they outlive a PATCH's new worker
        self._cams_lock = threading.RLock()
        self.models = CameraModels(settings, predictor, self.registry, camera=self._camera, alerting=self._alerting,
                                   inference=self._inference, listeners=self._listeners, publish=self.publish_camera)
        self._watchdog = Watchdog(self._supervised, interval_s=wd.interval_s, max_restarts=wd.max_restarts,
                                  window_s=wd.restart_window_s)
        self._started = False
        self._started_at: float | None = None
        self.learning = Learning(settings.learning, settings.data_dir, self, device=settings.device)
        self.on_scene_change(self._relearn_in_background)

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
        self.learning.start()  # brings back the cameras added over the API and resumes their learning
        self._watchdog.start()

    def stop(self) -> None:
        if not self._started:
            return
        self._watchdog.stop()
        self.learning.stop()
        with self._cams_lock:
            cams = list(self._cams.values())
        for c in cams:  # signal every camera first, then join: a slow source does not delay the others
            c.worker.request_stop()
        for c in cams:
            c.worker.stop()
        self._inference.stop()
        for c in cams:
            self._alerting.close_events(c)
        self._started = False

    # -- cameras ------------------------------------------------------------------------------------------

    def add_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus:
        """Untrusted (API) cameras count against max_cameras; trusted ones (the settings file) are not refused."""
        spec = resolve_source(cam.url, trusted=trusted, media_dir=self.settings.media_dir)  # ValueError -> 422
        return self._run_camera(cam, spec, counted=not trusted)

    def update_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus:
        """Run the camera with new settings (url, fps, alerts): a new capture worker and alert engine; its model,
        its registry versions and its learning stay. ValueError (a URL refused, alert settings that do not hold)
        changes nothing; KeyError for an unknown camera."""
        spec = resolve_source(cam.url, trusted=trusted, media_dir=self.settings.media_dir)  # ValueError -> 422
        # Its alert overrides on top of the service's alert settings (a hysteresis they break: ValueError) before
        # the running camera is dropped.
        cam.alert_settings(self.settings.alerts)
        with self._cams_lock:
            old = self._cams[cam.id]
        self._drop_camera(cam.id)  # its tap (footage recording) stays for the new worker
        # Its slot was counted already; a URL that came from the API stays an untrusted source.
        self._run_camera(cam, dataclasses.replace(spec, trusted=trusted and old.worker.spec.trusted), counted=False)
        if old.entry is None and old.model is not self.models.shipped:  # set directly, not from the registry
            self.set_camera_model(cam.id, old.model.scorer, version=old.model.version, sha256=old.model.sha256)  # type: ignore[arg-type]
        log.info("camera %s updated (%s)", cam.id, redact_url(cam.url))
        return self.get_camera(cam.id)

    def _run_camera(self, cam: CameraSettings, spec: SourceSpec, *, counted: bool) -> CameraStatus:
        """Start a camera whose source is resolved; `counted`: refused beyond max_cameras."""
        model, entry, error = self.models.registered(cam.id, cam.fps)
        with self._cams_lock:
            if cam.id in self._cams:
                raise CameraExists(f"camera {cam.id!r} already exists")
            if counted and len(self._cams) >= self.settings.max_cameras:
                raise CameraLimit(f"the service runs {len(self._cams)} cameras, the limit (max_cameras)")
            cfg = model.scorer.config
            ring = RingBuffer(cam.id, cfg.num_frames, cfg.frame_stride)
            worker = CaptureWorker(cam, spec, ring, model, self._inference, source_factory=self._factory,
                                   clock=self._clock)
            self._cams[cam.id] = c = self._alerting.new_camera(cam, worker, model)
            c.model_error, c.entry = error, entry
            worker.tap = self._taps.get(cam.id)
            self._inference.register(cam.id)
            if self._started and cam.enabled:
                worker.start()
        log.info("camera %s added (%s)", cam.id, redact_url(cam.url))
        return self.get_camera(cam.id)

    def camera_live(self, camera_id: str) -> bool:
        """Its frames come, or are about to: its capture is live or connecting for the first time (False for an
        unknown camera, and after a fault: reconnecting, stalled, ended, failed; and for a disabled one)."""
        c = self._camera(camera_id)
        return c is not None and c.cam.enabled and c.worker.state in ("live", "connecting")

    def camera_ids(self) -> list[str]:
        with self._cams_lock:
            return sorted(self._cams)

    def detection_delay_s(self, camera_id: str) -> float:
        """How long after its first frame an alert or a scene change of the camera is raised at most (its alerts'
        min_duration, the scene's hold): what a refresh's recent footage waits before a frame counts as clean.
        KeyError: unknown camera."""
        cam = self.camera_settings(camera_id)
        alerts = cam.alert_settings(self.settings.alerts).params()
        return max(alerts.min_duration_s, self.settings.scene.params().hold_s)

    def camera_settings(self, camera_id: str) -> CameraSettings:
        """The camera's settings as given (URL with credentials: never for a response). KeyError: unknown."""
        with self._cams_lock:
            return self._cams[camera_id].cam

    def set_tap(self, camera_id: str, tap: FrameTap | None) -> None:
        """Give every kept frame of the camera to `tap` (footage recording), also across update_camera; None:
        to nobody. KeyError: unknown camera (a tap kept for it would record a camera added later with its id)."""
        with self._cams_lock:
            c = self._cams[camera_id]
            if tap is None:
                self._taps.pop(camera_id, None)
            else:
                self._taps[camera_id] = tap
        c.worker.tap = tap

    def report_error(self, camera_id: str, error: str) -> None:
        """A camera's error that is not its capture's (footage refused, training failed): its last_error."""
        c = self._camera(camera_id)
        if c is not None:
            c.worker.last_error = error

    def mode(self, camera_id: str) -> CameraMode:
        with self._cams_lock:
            c = self._cams[camera_id]
        phase = self.learning.phase(camera_id)
        if phase == "recording":
            return "learning"
        if phase in IN_LINE:
            return "training"
        return "armed" if c.armed else "unarmed"

    def publish_camera(self, camera_id: str) -> None:
        """Tell the listeners (WebSocket clients) the camera's mode, model and learning: after one changed."""
        try:
            st = self.get_camera(camera_id)
        except KeyError:
            return
        version = st.model.version if st.model else SHIPPED
        self._listeners.emit(CameraMessage(camera_id, st.mode, version, st.learning))

    def set_camera_model(self, camera_id: str, predictor: Predictor | None, *, version: str = "custom",
                         sha256: str | None = None, entry: ModelEntry | None = None) -> ModelStatus:
        """Score the camera with `predictor` from its next window on (None: the shipped model): CameraModels.set."""
        return self.models.set(camera_id, predictor, version=version, sha256=sha256, entry=entry)

    def activate_model(self, camera_id: str, version: str | None) -> ModelStatus:
        """Swap in the camera's registry version and make it the active one: CameraModels.activate."""
        return self.models.activate(camera_id, version)

    def remove_camera(self, camera_id: str) -> None:
        """Stop the camera and forget it, its footage tap too (a camera added again with its id starts
        without one). KeyError: unknown camera."""
        self._drop_camera(camera_id)
        with self._cams_lock:
            self._taps.pop(camera_id, None)

    def _drop_camera(self, camera_id: str) -> None:
        with self._cams_lock:
            c = self._cams.pop(camera_id)  # KeyError -> 404
        c.worker.stop()
        self._inference.unregister(camera_id)
        self._alerting.close_events(c)
        self._recorder.forget(camera_id)
        log.info("camera %s removed", camera_id)

    def _camera(self, camera_id: str) -> LiveCamera | None:
        with self._cams_lock:
            return self._cams.get(camera_id)

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
            history_resets=w.history_resets, on_threshold=c.engine.params.on_threshold, model=c.model_status(),
            mode=self.mode(camera_id), learning=self.learning.view(camera_id), stream=w.stream)

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
            with contextlib.suppress(KeyError):  # removed meanwhile
                out.append(self.get_camera(i))
        return out

    def stats(self) -> dict[str, object]:
        cams: dict[str, object] = {}
        with self._cams_lock:
            items = list(self._cams.items())
        for cid, c in items:
            st = self.get_camera(cid)
            cams[cid] = {**st.to_dict(), "fps_captured": round(c.worker.captured_rate.rate(), 2),
                         "fps_read": round(c.worker.read_rate.rate(), 2), **self._inference.camera_stats(cid),
                         "ring": len(c.worker.ring), "event_active": c.engine.active, "scene": c.scene.state}
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
        return self._listeners.add_listener(fn)

    def add_batch_listener(self, fn: BatchListener) -> Callable[[], None]:
        return self._listeners.add_batch_listener(fn)

    def on_scene_change(self, hook: RelearnHook) -> Callable[[], None]:
        """Call `hook(camera_id)` when a camera's scene_change event starts and `learning.auto_relearn` is on (the
        learning controller relearns the camera); returns the unsubscribe function."""
        return self._listeners.on_scene_change(hook)

    def _relearn_in_background(self, camera_id: str) -> None:
        """The learning controller's relearn, off the inference thread (it opens files and publishes)."""
        def relearn() -> None:
            try:
                self.learning.learn(camera_id)
            except LearningBusy:
                log.info("camera %s: scene changed while it is learning already", camera_id)
            except KeyError:
                pass  # removed meanwhile
        threading.Thread(target=relearn, name=f"relearn-{camera_id}", daemon=True).start()

    # -- clips --------------------------------------------------------------------------------------------

    def score_clip(self, path: Path, *, alerts: AlertSettings | None = None,
                   cancel: threading.Event | None = None) -> ClipResult:
        """Score an uploaded clip with the live model (batches interleave with live inference) within the clip
        limits of the settings; setting `cancel` stops it at the next frame or batch (ClipCancelled)."""
        return score_clip(self.predictor, Path(path), alerts=alerts or self.settings.alerts,
                          limits=ClipLimits.from_settings(self.settings), model_lock=self._model_lock,
                          batch_size=self.settings.inference.max_batch, cancel=cancel)
