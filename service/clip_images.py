"""Event images of uploaded clips (POST /v1/score): JPEGs under data_dir/clips/<result id>/, served for a while
(`clip_images_ttl_s`) and then deleted, so that a scored clip's answer can link its images like a live event's
without the service keeping every upload's pictures."""
from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .snapshots import write_event_images

_ID = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[0-9a-f]{32}-(snapshot|heatmap)\.jpg")


class ClipImages:
    def __init__(self, root: Path, ttl_s: float, *, clock: Callable[[], float] = time.time) -> None:
        self.root, self.ttl_s, self._clock = Path(root), ttl_s, clock

    def save(self, images: dict[str, tuple[bytes, bytes]]) -> tuple[str, dict[str, tuple[str, str]]]:
        """event id -> (snapshot JPEG, heatmap JPEG), written under a new result id (after expired results are
        deleted) -> (result id, event id -> the two file names)."""
        self.cleanup()
        result_id = uuid.uuid4().hex
        folder = self.root / result_id
        folder.mkdir(parents=True)
        names: dict[str, tuple[str, str]] = {}
        for event_id, (snap, heat) in images.items():
            names[event_id] = write_event_images(folder, event_id, snap, heat)
        return result_id, names

    def path(self, result_id: str, name: str) -> Path | None:
        """The image file, or None when the ids are malformed, it never existed or it has expired."""
        if not _ID.fullmatch(result_id) or not _NAME.fullmatch(name):
            return None
        folder = self.root / result_id
        if self._expired(folder):
            return None
        path = folder / name
        return path if path.is_file() else None

    def cleanup(self) -> int:
        """Delete the results older than ttl_s; the number deleted."""
        if not self.root.is_dir():
            return 0
        gone = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and _ID.fullmatch(folder.name) and self._expired(folder):
                shutil.rmtree(folder, ignore_errors=True)
                gone += 1
        return gone

    def _expired(self, folder: Path) -> bool:
        try:
            return self._clock() - folder.stat().st_mtime > self.ttl_s
        except FileNotFoundError:
            return True
