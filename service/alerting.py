"""Scores -> alerts -> events, on the inference thread: each scored window goes to its camera's alert engine and
scene-change detector, the events they raise to the event recorder, and everything to the listeners.

Beside its alert engine each camera has a scene-change detector (model/scene.py): when the camera shows another
view, its anomaly alerts are held back, an open anomaly event ends, one scene_change event is raised, and with
`learning.auto_relearn` the relearn hooks (`on_scene_change`) are called.

Both measure durations in the camera's content time (`Window.media_ts`, service.media_time), not in wall time: a
burst of buffered frames is as many seconds of content as at real time. What they report is converted to wall
time in one place (`_record`), and the wall times of the API's actions to content time (`_engine_now`). A break
in a camera's frames (a new `Window.run`) restarts both engines' smoothing and held durations.

An unarmed camera's scores are published with armed=false and feed no alert. A window cut for a camera's
previous model is dropped, not scored into the new model's calibration.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model import AlertEngine, CameraCalibration, EventUpdate, FrameScores, SceneChangeDetector

from .capture import CaptureWorker
from .frames import REPORTED_METRICS, EventMessage, ScoreMessage, ServedModel, Window
from .listeners import Listeners
from .live_camera import LiveCamera
from .recorder import EventRecorder
from .registry import ModelEntry
from .settings import CameraSettings, Settings


class Alerting:
    """The cameras' alert state: made with a camera, reset with its model, closed with it; fed by inference.
    `camera` finds a running camera (None once removed)."""

    def __init__(self, settings: Settings, recorder: EventRecorder, listeners: Listeners, *,
                 camera: Callable[[str], LiveCamera | None], clock: Callable[[], float]) -> None:
        self.settings, self._recorder, self._listeners = settings, recorder, listeners
        self._camera, self._clock = camera, clock

    def new_camera(self, cam: CameraSettings, worker: CaptureWorker, model: ServedModel) -> LiveCamera:
        alerts = cam.alert_settings(self.settings.alerts).params()
        calibration = CameraCalibration(model.scorer.calibration, alerts)
        return LiveCamera(cam, worker, model, calibration, AlertEngine(cam.id, alerts),
                          SceneChangeDetector(cam.id, self.settings.scene.params()))

    def swap_model(self, c: LiveCamera, model: ServedModel, entry: ModelEntry | None) -> list[EventMessage]:
        """Score the camera with `model` from now on: its open events end (their messages returned, for the
        caller to emit once the camera's windows for the old model are gone), its alerts use the new model's
        calibration, and its current view becomes its usual picture."""
        alerts = c.cam.alert_settings(self.settings.alerts).params()
        with c.lock:
            now = self._engine_now(c)
            ended = [self._record(c, u) for u in [*c.engine.close(now), *c.scene.close(now)]]
            c.model, c.model_error, c.entry = model, None, entry
            c.calibration = CameraCalibration(model.scorer.calibration, alerts)
            c.engine = AlertEngine(c.cam.id, alerts)
            c.scene = SceneChangeDetector(c.cam.id, self.settings.scene.params())
        return ended

    def close_events(self, c: LiveCamera) -> None:
        with c.lock:
            now = self._engine_now(c)
            msgs = [self._record(c, u) for u in [*c.engine.close(now), *c.scene.close(now)]]
        for m in msgs:
            self._listeners.emit(m)

    def on_scores(self, batch: list[Window], scores: FrameScores, ms: float) -> None:
        self._listeners.batch(len(batch), ms)
        for i, w in enumerate(batch):
            c = self._camera(w.camera_id)
            if c is None:
                continue  # removed while its window was in flight
            with c.lock:
                if w.model is not c.model:
                    continue  # cut for the camera's previous model: its scores are not this calibration's
                if c.run is not None and w.run != c.run:  # a break in the frames: nothing held spans it
                    c.engine.restart()
                    c.scene.restart()
                c.run = w.run
                media_ts = c.media.observe(w.ts, w.media_ts)
                z = c.calibration.z(float(scores.anomaly[i]), media_ts)  # warm-up: seconds of content
                armed = c.armed  # unarmed: scores published, never alerted on
                events = self._alert(c, w, media_ts, z, scores.heatmap[i]) if armed else []
                smoothed = None if not armed or c.scene.suppressing else c.engine.smoothed
                c.scored = (w.frame, scores.heatmap[i].copy())
            metrics = {k: float(getattr(scores, k)[i]) for k in REPORTED_METRICS}
            self._listeners.emit(ScoreMessage(w.camera_id, w.frame_index, w.ts, z, smoothed, metrics,
                                              round((self._clock() - w.ts) * 1000, 2), w.model.version, armed))
            for m in events:
                self._listeners.emit(m)
            if self.settings.learning.auto_relearn and any(
                    m.kind == "start" and m.event.type == "scene_change" for m in events):
                self._listeners.relearn(w.camera_id)
            if any(m.kind == "end" for m in events):
                self._recorder.apply_retention()

    def _alert(self, c: LiveCamera, w: Window, now: float, z: float | None,
               heatmap: np.ndarray) -> list[EventMessage]:
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

    def _record(self, c: LiveCamera, u: EventUpdate) -> EventMessage:
        """Record an engine's event update (its lock held): its times, the engines' content time, in wall time."""
        return self._recorder.record(c.media.event_to_wall(u))

    def _engine_now(self, c: LiveCamera) -> float:
        """The wall clock's now on the camera's engines' timeline (its lock held)."""
        return c.media.to_media(self._clock())
