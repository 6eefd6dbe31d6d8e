"""Which model scores each camera: the shipped predictor, or a version of its own from the model registry (loaded
on the shipped predictor's device, in the service's precision, its sha256 verified), swapped live.

A swap reaches the camera's capture (its next windows are cut for the new model), inference (its windows cut for
the old model are dropped) and alerting (the new model's calibration, open events end); the other cameras never
notice.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from model import Predictor, WeightsError, sha256_file

from .alerting import Alerting
from .frames import SHIPPED, ModelStatus, ServedModel
from .inference import InferenceWorker
from .listeners import Listeners
from .live_camera import LiveCamera
from .registry import ModelEntry, ModelRegistry
from .settings import Settings

log = logging.getLogger(__name__)


class RateMismatch(WeightsError):
    """A camera's model learnt motion at another frame rate than the camera runs at."""


class CameraModels:
    """`camera` finds a running camera (None: unknown); `publish` tells the listeners a camera's mode and model."""

    def __init__(self, settings: Settings, predictor: Predictor, registry: ModelRegistry, *,
                 camera: Callable[[str], LiveCamera | None], alerting: Alerting, inference: InferenceWorker,
                 listeners: Listeners, publish: Callable[[str], None]) -> None:
        self.settings, self.predictor, self.registry = settings, predictor, registry
        self.shipped = ServedModel(predictor, SHIPPED, sha256_file(predictor.path) if predictor.path else None)
        self._camera, self._alerting, self._inference = camera, alerting, inference
        self._listeners, self._publish = listeners, publish

    def _get(self, camera_id: str) -> LiveCamera:
        c = self._camera(camera_id)
        if c is None:
            raise KeyError(camera_id)
        return c

    def registered(self, camera_id: str, fps: float) -> tuple[ServedModel, ModelEntry | None, str | None]:
        """The camera's active model in the registry (a restart keeps it) and its entry, else the shipped one;
        with the reason when its active model cannot be loaded, or learnt at another rate than the camera's `fps`
        (it stays the active version: at its rate it scores the camera again)."""
        try:
            entry = self.registry.active(camera_id)
            if entry is None:
                return self.shipped, None, None
            mismatch = entry.rate_mismatch(fps)
            if mismatch is not None:
                log.warning("camera %s: scoring with the shipped model: %s", camera_id, mismatch)
                return self.shipped, None, f"{mismatch}; scoring with the shipped model"
            return ServedModel(self._load(camera_id, entry.version), entry.version, entry.sha256), entry, None
        except WeightsError as e:
            log.error("camera %s: its model cannot be loaded, scoring with the shipped one: %s", camera_id, e)
            return self.shipped, None, f"{e}; scoring with the shipped model"

    def _load(self, camera_id: str, version: str) -> Predictor:
        precision = None if self.settings.precision == "auto" else self.settings.precision
        return self.registry.load(camera_id, version, device=str(self.predictor.device), precision=precision)

    def set(self, camera_id: str, predictor: Predictor | None, *, version: str = "custom",
            sha256: str | None = None, entry: ModelEntry | None = None) -> ModelStatus:
        """Score the camera with `predictor` from its next window on (None: the shipped model), without a restart.
        Other cameras keep every window. This camera's windows cut for the old model are dropped; its history
        restarts when the new model preprocesses or cuts windows differently; its alerts use the new model's
        calibration (with the camera's warm-up, if set) and an open event ends; so does an open scene change (the
        new model is the relearnt one), and the camera's current view becomes its usual picture. KeyError for an
        unknown camera."""
        c = self._get(camera_id)
        if predictor is None:
            model = self.shipped
        else:
            if sha256 is None and predictor.path is not None:
                sha256 = sha256_file(predictor.path)
            model = ServedModel(predictor, version, sha256)
        ended = self._alerting.swap_model(c, model, entry)
        c.worker.set_model(model)
        self._inference.drop_stale(camera_id, model)
        for m in ended:
            self._listeners.emit(m)
        log.info("camera %s: scoring with model %s", camera_id, model.version)
        self._publish(camera_id)
        return c.model_status()

    def activate(self, camera_id: str, version: str | None) -> ModelStatus:
        """Load the camera's registry version (its sha256 verified), swap it in and make it the active one; None:
        back to the shipped model. A version that cannot be loaded raises WeightsError and changes nothing: the
        camera keeps its model and its status says why. KeyError: unknown camera or version."""
        c = self._get(camera_id)
        if version is None:
            self.registry.activate(camera_id, None)
            return self.set(camera_id, None)
        entry = self.registry.entry(camera_id, version)
        mismatch = entry.rate_mismatch(c.cam.fps)
        if mismatch is not None:
            raise RateMismatch(mismatch)
        try:
            predictor = self._load(camera_id, entry.version)
        except WeightsError as e:
            with c.lock:
                c.model_error = f"model {entry.version} not loaded: {e}"
            log.error("camera %s: %s", camera_id, c.model_error)
            raise
        self.registry.activate(camera_id, entry.version)
        return self.set(camera_id, predictor, version=entry.version, sha256=entry.sha256, entry=entry)
