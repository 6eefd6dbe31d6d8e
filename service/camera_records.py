"""Cameras added over the API, kept in data_dir so that they come back after a restart.

    data_dir/cameras/{id}/camera.json   the camera's settings as given (its URL with any credentials: the file
                                        is readable by the service's user only; the API never shows them)

Cameras of the settings file are not kept here: the file is their record.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from .settings import SLUG, CameraSettings

log = logging.getLogger(__name__)
RECORD_FILE = "camera.json"


class CameraRecords:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "cameras"

    def folder(self, camera_id: str) -> Path:
        if not SLUG.match(camera_id):  # ids become paths: never let one climb out of cameras/
            raise ValueError(f"camera id {camera_id!r} must be a slug")
        return self.root / camera_id

    def save(self, cam: CameraSettings) -> None:
        folder = self.folder(cam.id)
        folder.mkdir(parents=True, exist_ok=True)
        data = CameraSettings.model_validate(cam.model_dump(include=set(CameraSettings.model_fields))).model_dump()
        fd, tmp = tempfile.mkstemp(prefix=f".{RECORD_FILE}.", dir=folder)  # created 0600: credentials inside
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, indent=1) + "\n")
            os.replace(tmp, folder / RECORD_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self, camera_id: str) -> None:
        (self.folder(camera_id) / RECORD_FILE).unlink(missing_ok=True)

    def load(self) -> list[CameraSettings]:
        """Every recorded camera, by id; a damaged record is logged and skipped (never a reason not to start).
        Only the folders named as cameras are: a deleted camera's tombstone (service.tombstones) is not one."""
        out = []
        for path in sorted(self.root.glob(f"*/{RECORD_FILE}")):
            if not SLUG.match(path.parent.name):
                continue
            try:
                out.append(CameraSettings.model_validate(json.loads(path.read_text())))
            except (OSError, ValueError, ValidationError) as e:
                log.error("camera record %s skipped: %s", path, str(e).splitlines()[0])
        return out
