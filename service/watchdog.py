"""Watchdog: a thread that runs a check every `interval_s` (Frigate's `while not stop.wait(1)` loop)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, check: Callable[[], None], *, interval_s: float = 1.0, name: str = "watchdog") -> None:
        self._check = check
        self.interval_s = interval_s
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._check()
            except Exception:  # the watchdog itself must outlive a failing check
                log.exception("%s check failed", self._name)
