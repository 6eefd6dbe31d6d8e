"""Who hears the pipeline: its message listeners (WebSocket hub, metrics, refresh), its batch listeners (metrics)
and its relearn hooks (learning). Each list is copied under one lock before it is called, so a subscriber may
unsubscribe from inside a call, and one failing subscriber never stops the others or the thread that calls.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from .frames import CameraMessage, EventMessage, ScoreMessage

log = logging.getLogger(__name__)
Listener = Callable[[ScoreMessage | EventMessage | CameraMessage], None]
BatchListener = Callable[[int, float], None]  # (windows in the batch, forward time in ms): inference thread
RelearnHook = Callable[[str], None]  # camera id whose view changed: inference thread, so hand long work elsewhere
_Fn = TypeVar("_Fn", Listener, BatchListener, RelearnHook)


class Listeners:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._batch_listeners: list[BatchListener] = []
        self._relearn_hooks: list[RelearnHook] = []
        self._lock = threading.Lock()

    def _subscribe(self, subscribers: list[_Fn], fn: _Fn) -> Callable[[], None]:
        """Add `fn` to one of the subscriber lists (under the lock); returns its unsubscribe function."""
        with self._lock:
            subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in subscribers:
                    subscribers.remove(fn)
        return unsubscribe

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        return self._subscribe(self._listeners, fn)

    def add_batch_listener(self, fn: BatchListener) -> Callable[[], None]:
        return self._subscribe(self._batch_listeners, fn)

    def on_scene_change(self, hook: RelearnHook) -> Callable[[], None]:
        return self._subscribe(self._relearn_hooks, hook)

    def emit(self, msg: ScoreMessage | EventMessage | CameraMessage) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(msg)
            except Exception:  # one bad subscriber must not starve the others or the pipeline
                log.exception("listener failed")

    def batch(self, size: int, ms: float) -> None:
        with self._lock:
            batch_listeners = list(self._batch_listeners)
        for fn in batch_listeners:
            try:
                fn(size, ms)
            except Exception:  # metrics must not stop scoring
                log.exception("batch listener failed")

    def relearn(self, camera_id: str) -> None:
        with self._lock:
            hooks = list(self._relearn_hooks)
        for fn in hooks:
            try:
                fn(camera_id)
            except Exception:  # a failed relearn must not stop scoring
                log.exception("camera %s: relearn hook failed", camera_id)
