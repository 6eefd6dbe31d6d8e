"""A stand-in for the pipeline as service.learning and service.refresh use it, and the helpers of the tests that
race a learning host's operations (delete, learn, PATCH, polls) against each other."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.frames import ModelStatus
from service.learning import Learning
from service.registry import ModelRegistry
from service.settings import CameraSettings, LearningSettings

GUARD_S = 60.0  # only against a hang: every wait below ends on an event, never on time


class Host:
    """The pipeline as learning and refresh use it: cameras, taps, errors, and a model activation that can be
    held (slow work)."""

    def __init__(self, data: Path, *ids: str) -> None:
        self.registry = ModelRegistry(data)
        self.cams = {i: CameraSettings(id=i, url=f"rtsp://127.0.0.1/{i}", fps=5.0) for i in ids}
        self.taps: dict[str, Any] = {}
        self.errors: list[tuple[str, str]] = []
        # Each `camera` message: the camera and its learning as the message says it (with `view_of` set)
        self.published: list[tuple[str, dict[str, Any] | None]] = []
        self.view_of: Callable[[str], dict[str, Any] | None] | None = None
        self.hold = False
        self.live = True  # the cameras' frames come
        self.entered, self.go = threading.Event(), threading.Event()
        self.polled = 0

    def camera_ids(self) -> list[str]:
        self.polled += 1
        return sorted(self.cams)

    def list_cameras(self) -> list[Any]:
        return []

    def camera_settings(self, camera_id: str) -> CameraSettings:
        return self.cams[camera_id]

    def get_camera(self, camera_id: str) -> Any:
        return self.cams[camera_id]

    def detection_delay_s(self, camera_id: str) -> float:
        return 0.0

    def set_tap(self, camera_id: str, tap: Any) -> None:
        if tap is None:
            self.taps.pop(camera_id, None)
        else:
            self.taps[camera_id] = tap

    def activate_model(self, camera_id: str, version: str | None) -> ModelStatus:
        if self.hold:
            self.entered.set()
            assert self.go.wait(GUARD_S)
        self.registry.activate(camera_id, version)
        return ModelStatus(version or "shipped", None, None)

    def report_error(self, camera_id: str, error: str) -> None:
        self.errors.append((camera_id, error))

    def publish_camera(self, camera_id: str) -> None:
        self.published.append((camera_id, None if self.view_of is None else self.view_of(camera_id)))

    def add_listener(self, fn: Callable[..., None]) -> None:
        pass

    def add_camera(self, cam: CameraSettings, *, trusted: bool = False) -> Any:
        self.cams[cam.id] = cam

    def camera_live(self, camera_id: str) -> bool:
        return self.live

    def update_camera(self, cam: CameraSettings, *, trusted: bool = False) -> Any:
        self.cams[cam.id] = cam

    def remove_camera(self, camera_id: str) -> None:
        del self.cams[camera_id]
        self.taps.pop(camera_id, None)


def settings(**over: Any) -> LearningSettings:
    return LearningSettings.model_validate({"refresh_days": 1.0, "refresh_margin_s": 0.0, "footage_minutes": 0.01,
                                            "poll_s": 0.02, **over})


def in_thread(fn: Callable[[], Any]) -> Any:
    """fn's result, from another thread; fails (instead of hanging) when it waits on a lock held elsewhere."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(GUARD_S)
    assert out, "blocked"
    return out[0]


class WatchedLock:
    """A lock that says when a thread has to wait for it (another thread holds it)."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.waited = lock, threading.Event()

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            self.waited.set()
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def learn_in_thread(learning: Learning, camera_id: str) -> tuple[threading.Thread, list[object]]:
    """learn(camera_id) started in another thread, and the list that gets its view or its KeyError."""
    learnt: list[object] = []

    def learn() -> None:
        try:
            learnt.append(learning.learn(camera_id))
        except KeyError as e:
            learnt.append(e)
    thread = threading.Thread(target=learn, daemon=True)
    thread.start()
    return thread, learnt
