"""Pipeline: builds and owns capture workers, the inference worker, alert engines and the watchdog, and
routes scores to the event recorder and the listeners. The API codes against this class.

capture (thread per camera) -> ring -> inference (one batched forward per model) -> alerts -> recorder -> listeners
The watchdog supervises every enabled camera's capture and the inference worker (restarts, budget, failed).

Beside its alert engine each camera has a scene-change detector (model/scene.py): when the camera shows another
view, its anomaly alerts are held back, an open anomaly event ends, one scene_change event is raised, and with
`learning.auto_relearn` the relearn hooks (`on_scene_change`) are called.

Both measure durations in the camera's content time (`Window.media_ts`, service.media_time), not in wall time: a
burst of buffered frames is as many seconds of content as at real time. What they report is converted to wall
time in one place (`_record`), and the wall times of the API's actions to content time (`_engine_now`).

Every camera is scored by one model: the shipped predictor, or one of its own from the model registry. A camera's
model is swapped live (`set_camera_model`, `activate_model`): the other cameras never notice, and the camera's
windows cut for the old model are dropped, not scored into the new model's calibration.

A camera without a model of its own that does not opt into the shipped one (`use_shipped: false`) is unarmed:
its scores are published with armed=false and feed no alert. Its learning (service.learning) records its
footage through a tap on its capture and trains its own model; the camera's mode says where it stands.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from model import (
    AlertEngine,
    CameraCalibration,
    EventUpdate,
    FrameScores,
    Predictor,
    SceneChangeDetector,
    WeightsError,
    sha256_file,
)

from .capture import CaptureWorker, FrameTap
from .clips import ClipError, ClipLimits, ClipResult, score_clip
from .frames import (
    REPORTED_METRICS,
    SHIPPED,
    CameraMessage,
    CameraMode,
    CameraStatus,
    EventMessage,
    ModelStatus,
    ScoreMessage,
    ServedModel,
    Window,
)
from .inference import InferenceWorker
from .learning import Learning, LearningBusy
from .media_time import MediaClock
from .recorder import EventRecorder
from .registry import ModelEntry, ModelRegistry
from .ring import RingBuffer
from .settings import AlertSettings, CameraSettings, Settings
from .sources import SourceFactory, open_opencv_source
from .store import EventStore
from .urls import redact_url, resolve_source
from .watchdog import Supervised, Watchdog

__all__ = ["CameraExists", "CameraLimit", "ClipError", "ClipResult", "Pipeline"]
log = logging.getLogger(__name__)
Listener = Callable[[ScoreMessage | EventMessage | CameraMessage], None]
BatchListener = Callable[[int, float], None]  # (windows in the batch, forward time in ms): inference thread
RelearnHook = Callable[[str], None]  # camera id whose view changed: inference thread, so hand long work elsewhere
_Fn = TypeVar("_Fn", Listener, BatchListener, RelearnHook)


class CameraExists(Exception):
    """A camera with this id is already running (the API answers 409)."""


class CameraLimit(Exception):
    """The service runs max_cameras cameras already (the API answers 409)."""


class _Camera:
    """One camera's parts; `lock` guards its model, calibration, alert engine and scene-change detector (inference
    vs stop/remove/swap)."""

    def __init__(self, cam: CameraSettings, worker: CaptureWorker, model: ServedModel,
                 calibration: CameraCalibration, engine: AlertEngine, scene: SceneChangeDetector) -> None:
        self.cam, self.worker, self.model, self.calibration, self.engine = cam, worker, model, calibration, engine
        self.scene = scene
        self.model_error: str | None = None  # why the last model change failed
        self.entry: ModelEntry | None = None  # the registry version that scores it (None: shipped or unregistered)
        self.lock = threading.Lock()
        self.scored: tuple[np.ndarray, np.ndarray] | None = None  # (raw frame, heatmap) scored last
        self.media = MediaClock()  # the engines' content time <-> wall time

    @property
    def armed(self) -> bool:
        """Its scores feed its alerts: a model of its own scores it, or it opted into the shipped one."""
        return self.model.version != SHIPPED or self.cam.use_shipped


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
        self._taps: dict[str, FrameTap] = {}  # footage recorders, by camera: they outlive a PATCH's new worker
        self._cams_lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._batch_listeners: list[BatchListener] = []
        self._relearn_hooks: list[RelearnHook] = []
        self._listeners_lock = threading.Lock()
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
            self._close_events(c)
        self._started = False

    # -- cameras ------------------------------------------------------------------------------------------

    def add_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus:
        """Untrusted (API) cameras count against max_cameras; trusted ones (the settings file) are not refused."""
        spec = resolve_source(cam.url, trusted=trusted, media_dir=self.settings.media_dir)  # ValueError -> 422
        model, entry, error = self._registered_model(cam.id)
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
            self._cams[cam.id] = c = _Camera(cam, worker, model, calibration, AlertEngine(cam.id, alerts),
                                             SceneChangeDetector(cam.id, self.settings.scene.params()))
            c.model_error, c.entry = error, entry
            worker.tap = self._taps.get(cam.id)
            self._inference.register(cam.id)
            if self._started and cam.enabled:
                worker.start()
        log.info("camera %s added (%s)", cam.id, redact_url(cam.url))
        return self.get_camera(cam.id)

    def _registered_model(self, camera_id: str) -> tuple[ServedModel, ModelEntry | None, str | None]:
        """The camera's active model in the registry (a restart keeps it) and its entry, else the shipped one;
        with the reason when its active model cannot be loaded."""
        try:
            entry = self.registry.active(camera_id)
            if entry is None:
                return self.shipped, None, None
            return ServedModel(self._load(camera_id, entry.version), entry.version, entry.sha256), entry, None
        except WeightsError as e:
            log.error("camera %s: its model cannot be loaded, scoring with the shipped one: %s", camera_id, e)
            return self.shipped, None, f"{e}; scoring with the shipped model"

    def update_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus:
        """Run the camera with new settings (url, fps, alerts): a new capture worker and alert engine; its model,
        its registry versions and its learning stay. ValueError (a URL refused) changes nothing; KeyError for
        an unknown camera."""
        resolve_source(cam.url, trusted=trusted, media_dir=self.settings.media_dir)  # ValueError -> 422
        with self._cams_lock:
            old = self._cams[cam.id]
        self._drop_camera(cam.id)  # its tap (footage recording) stays for the new worker
        self.add_camera(cam, trusted=True)  # checked above; the camera's slot was counted already
        if old.entry is None and old.model is not self.shipped:  # a model set directly, not from the registry
            self.set_camera_model(cam.id, old.model.scorer, version=old.model.version, sha256=old.model.sha256)  # type: ignore[arg-type]
        log.info("camera %s updated (%s)", cam.id, redact_url(cam.url))
        return self.get_camera(cam.id)

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
        """Give every kept frame of the camera to `tap` (footage recording), also across update_camera."""
        with self._cams_lock:
            if tap is None:
                self._taps.pop(camera_id, None)
            else:
                self._taps[camera_id] = tap
            c = self._cams.get(camera_id)
        if c is not None:
            c.worker.tap = tap

    def report_error(self, camera_id: str, error: str) -> None:
        """A camera's error that is not its capture's (footage refused, training failed): its last_error."""
        with self._cams_lock:
            c = self._cams.get(camera_id)
        if c is not None:
            c.worker.last_error = error

    def mode(self, camera_id: str) -> CameraMode:
        with self._cams_lock:
            c = self._cams[camera_id]
        phase = self.learning.phase(camera_id)
        if phase == "recording":
            return "learning"
        if phase == "training":
            return "training"
        return "armed" if c.armed else "unarmed"

    def publish_camera(self, camera_id: str) -> None:
        """Tell the listeners (WebSocket clients) the camera's mode and model: after either changed."""
        try:
            st = self.get_camera(camera_id)
        except KeyError:
            return
        self._emit(CameraMessage(camera_id, st.mode, st.model.version if st.model else SHIPPED, st.learning))

    def _load(self, camera_id: str, version: str) -> Predictor:
        precision = None if self.settings.precision == "auto" else self.settings.precision
        return self.registry.load(camera_id, version, device=str(self.predictor.device), precision=precision)

    def set_camera_model(self, camera_id: str, predictor: Predictor | None, *, version: str = "custom",
                         sha256: str | None = None, entry: ModelEntry | None = None) -> ModelStatus:
        """Score the camera with `predictor` from its next window on (None: the shipped model), without a restart.
        Other cameras keep every window. This camera's windows cut for the old model are dropped; its history
        restarts when the new model preprocesses or cuts windows differently; its alerts use the new model's
        calibration (with the camera's warm-up, if set) and an open event ends; so does an open scene change (the
        new model is the relearnt one), and the camera's current view becomes its usual picture. KeyError for an
        unknown camera."""
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
            now = self._engine_now(c)
            ended = [self._record(c, u) for u in [*c.engine.close(now), *c.scene.close(now)]]
            c.model, c.model_error, c.entry = model, None, entry
            c.calibration = CameraCalibration(model.scorer.calibration, alerts)
            c.engine = AlertEngine(camera_id, alerts)
            c.scene = SceneChangeDetector(camera_id, self.settings.scene.params())
        c.worker.set_model(model)
        self._inference.drop_stale(camera_id, model)
        for m in ended:
            self._emit(m)
        log.info("camera %s: scoring with model %s", camera_id, model.version)
        self.publish_camera(camera_id)
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
        return self.set_camera_model(camera_id, predictor, version=entry.version, sha256=entry.sha256, entry=entry)

    @staticmethod
    def _model_status(c: _Camera) -> ModelStatus:
        m, e = c.model, c.entry
        status = ModelStatus(m.version, None if m.sha256 is None else m.sha256[:12], c.model_error)
        if e is None:
            return status
        return replace(status, created=e.created, footage=e.footage, heldout_psnr=e.heldout_psnr,
                       calibration=e.calibration)

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
        self._close_events(c)
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
            history_resets=w.history_resets, on_threshold=c.engine.params.on_threshold, model=self._model_status(c),
            mode=self.mode(camera_id), learning=self.learning.view(camera_id))

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

    def _subscribe(self, subscribers: list[_Fn], fn: _Fn) -> Callable[[], None]:
        """Add `fn` to one of the subscriber lists (under the listeners' lock); returns its unsubscribe function."""
        with self._listeners_lock:
            subscribers.append(fn)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if fn in subscribers:
                    subscribers.remove(fn)
        return unsubscribe

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        return self._subscribe(self._listeners, fn)

    def add_batch_listener(self, fn: BatchListener) -> Callable[[], None]:
        return self._subscribe(self._batch_listeners, fn)

    def on_scene_change(self, hook: RelearnHook) -> Callable[[], None]:
        """Call `hook(camera_id)` when a camera's scene_change event starts and `learning.auto_relearn` is on (the
        learning controller relearns the camera); returns the unsubscribe function."""
        return self._subscribe(self._relearn_hooks, hook)

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

    def _relearn(self, camera_id: str) -> None:
        with self._listeners_lock:
            hooks = list(self._relearn_hooks)
        for fn in hooks:
            try:
                fn(camera_id)
            except Exception:  # a failed relearn must not stop scoring
                log.exception("camera %s: relearn hook failed", camera_id)

    def _emit(self, msg: ScoreMessage | EventMessage | CameraMessage) -> None:
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
                media_ts = c.media.observe(w.ts, w.media_ts)
                z = c.calibration.z(float(scores.anomaly[i]), media_ts)  # warm-up: seconds of content
                armed = c.armed  # unarmed: scores published, never alerted on
                events = self._alert(c, w, media_ts, z, scores.heatmap[i]) if armed else []
                smoothed = None if not armed or c.scene.suppressing else c.engine.smoothed
                c.scored = (w.frame, scores.heatmap[i].copy())
            metrics = {k: float(getattr(scores, k)[i]) for k in REPORTED_METRICS}
            self._emit(ScoreMessage(w.camera_id, w.frame_index, w.ts, z, smoothed, metrics,
                                    round((self._clock() - w.ts) * 1000, 2), w.model.version, armed))
            for m in events:
                self._emit(m)
            if self.settings.learning.auto_relearn and any(
                    m.kind == "start" and m.event.type == "scene_change" for m in events):
                self._relearn(w.camera_id)
            if any(m.kind == "end" for m in events):
                self._recorder.apply_retention()

    def _alert(self, c: _Camera, w: Window, now: float, z: float | None, heatmap: np.ndarray) -> list[EventMessage]:
        """One scored window of a camera at content time `now` (its lock held) -> the event messages it causes,
        recorded in order."""
        scene = c.scene.update(w.data[-1], now)
        if any(u.kind == "start" for u in scene):
            # The one event of a new view: an anomaly event its first frames opened ends first (its images are
            # its own), then the scene change's snapshot is the new view.
            out = [self._record(c, u) for u in c.engine.close(now)]
            self._recorder.set_peak(w.camera_id, w.frame, heatmap)
            c.engine = AlertEngine(c.cam.id, c.engine.params)
            return out + [self._record(c, u) for u in scene]
        if scene:  # the old view is back: alerts start afresh, not from a smoothed score of before the change
            c.engine = AlertEngine(c.cam.id, c.engine.params)
            return [self._record(c, u) for u in scene]
        if c.scene.suppressing:
            return []
        updates = c.engine.update(z, now)
        if c.engine.peak_changed:
            self._recorder.set_peak(w.camera_id, w.frame, heatmap)
        return [self._record(c, u) for u in updates]

    def _record(self, c: _Camera, u: EventUpdate) -> EventMessage:
        """Record an engine's event update (its lock held): its times, the engines' content time, in wall time."""
        return self._recorder.record(c.media.event_to_wall(u))

    def _engine_now(self, c: _Camera) -> float:
        """The wall clock's now on the camera's engines' timeline (its lock held)."""
        return c.media.to_media(self._clock())

    def _close_events(self, c: _Camera) -> None:
        with c.lock:
            now = self._engine_now(c)
            msgs = [self._record(c, u) for u in [*c.engine.close(now), *c.scene.close(now)]]
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
