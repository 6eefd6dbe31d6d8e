"""Watchdog: one thread that checks every supervised component each `interval_s` (Frigate's
`while not stop_event.wait(1)` loop) and restarts the ones that died or hang, within a restart budget.

A component says what is wrong with it (`diagnose`); the watchdog decides what to do: restart it while its
budget allows (at most `max_restarts` within `window_s`, Frigate's MAX_RESTARTS = 5 per 60 s), else mark it
failed (`fail`) so that it stays down with a clear error instead of flapping forever.

Threads cannot be killed: a component restarts a hung thread by abandoning it (the thread exits, results
dropped, once its blocking call returns) and starting a fresh one; its `stop()` still joins both.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

log = logging.getLogger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


class Supervised(Protocol):
    name: str  # for log lines: "camera gate", "inference"

    def diagnose(self, now: float) -> str | None:
        """Why this component needs a restart (monotonic `now`), or None when it is healthy, stopped or failed."""

    def restart(self, reason: str) -> None: ...

    def fail(self, reason: str) -> None:
        """Give up: stay down in a failed state with `reason` as the error."""


class RestartBudget:
    """At most `max_restarts` within any `window_s` (sliding window)."""

    def __init__(self, max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_restarts, self.window_s = max_restarts, window_s
        self._clock = clock
        self._times: deque[float] = deque()

    def take(self) -> bool:
        """Spend one restart; False when the budget is used up (nothing is spent then)."""
        now = self._clock()
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True


class Watchdog:
    def __init__(self, components: Callable[[], Iterable[Supervised]], *, interval_s: float = 1.0,
                 max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, name: str = "watchdog") -> None:
        self._components = components
        self.interval_s = interval_s
        self.max_restarts, self.window_s = max_restarts, window_s
        self._clock = clock
        self._name = name
        # Keyed by the component object: a camera removed and added again starts with a fresh budget.
        self._budgets: weakref.WeakKeyDictionary[Supervised, RestartBudget] = weakref.WeakKeyDictionary()
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
                self.check()
            except Exception:  # the watchdog itself must outlive a failing check
                log.exception("%s check failed", self._name)

    def check(self) -> None:
        """One pass over every component (the thread's loop body; tests may call it directly)."""
        for comp in list(self._components()):
            if self._stop.is_set():
                return
            reason = comp.diagnose(self._clock())
            if reason is None:
                continue
            budget = self._budgets.get(comp)
            if budget is None:
                budget = self._budgets[comp] = RestartBudget(self.max_restarts, self.window_s, self._clock)
            if budget.take():
                log.warning("%s: restarting (%s)", comp.name, reason)
                comp.restart(reason)
            else:
                log.error("%s: %s; %d restarts within %.0f s, giving up", comp.name, reason, self.max_restarts,
                          self.window_s)
                comp.fail(f"{reason}; gave up after {self.max_restarts} restarts within {self.window_s:g} s")
