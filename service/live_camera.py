"""One running camera's parts: its settings, its capture worker, the model that scores it and its alert state."""
from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from model import AlertEngine, CameraCalibration, SceneChangeDetector

from .capture import CaptureWorker
from .frames import SHIPPED, ModelStatus, ServedModel
from .media_time import MediaClock
from .registry import ModelEntry
from .settings import CameraSettings


class LiveCamera:
    """`lock` guards its model, calibration, alert engine and scene-change detector (inference vs
    stop/remove/swap)."""

    def __init__(self, cam: CameraSettings, worker: CaptureWorker, model: ServedModel,
                 calibration: CameraCalibration, engine: AlertEngine, scene: SceneChangeDetector) -> None:
        self.cam, self.worker, self.model, self.calibration, self.engine = cam, worker, model, calibration, engine
        self.scene = scene
        self.model_error: str | None = None  # why the last model change failed
        self.entry: ModelEntry | None = None  # the registry version that scores it (None: shipped or unregistered)
        self.lock = threading.Lock()
        self.scored: tuple[np.ndarray, np.ndarray] | None = None  # (raw frame, heatmap) scored last
        self.media = MediaClock()  # the engines' content time <-> wall time
        self.run: int | None = None  # the run of frames (Window.run) scored last

    @property
    def armed(self) -> bool:
        """Its scores feed its alerts: a model of its own scores it, or it opted into the shipped one."""
        return self.model.version != SHIPPED or self.cam.use_shipped

    def model_status(self) -> ModelStatus:
        m, e = self.model, self.entry
        status = ModelStatus(m.version, None if m.sha256 is None else m.sha256[:12], self.model_error)
        if e is None:
            return status
        return replace(status, created=e.created, footage=e.footage, heldout_psnr=e.heldout_psnr,
                       calibration=e.calibration)
