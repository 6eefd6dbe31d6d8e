"""SupervisedThread: the thread mechanics a worker under the watchdog (service.watchdog) needs, written once.

A worker runs its loop in one thread at a time. Every thread gets its own cancel event, so a thread that died or
hangs can be abandoned: its cancel is set, a fresh thread takes over, and the old one changes nothing once its
blocking call returns (every shared-state update checks its cancel). `stop()` still joins every thread,
abandoned ones included, so nothing outlives the worker.

The watchdog calls `diagnose`, `restart` and `fail` (the `Supervised` protocol); a subclass says what the loop
is (`_run`), when it is supervised at all (`_active`), what else besides a dead thread needs a restart
(`_health`), and what a restart, a failure and a stop do to its own state.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class SupervisedThread:
    stop_timeout_s = 10.0  # how long stop() waits for all threads by default

    def __init__(self, name: str, *, kind: str, thread_name: str) -> None:
        """name: the component in watchdog log lines ("camera gate"); kind: what runs ("capture" thread);
        thread_name: the threads' name."""
        self.name = name
        self._kind = kind
        self._thread_name = thread_name
        # Guards the worker's state; a Condition, so a worker may wait on it. Every hook runs under it.
        self._lock = threading.Condition()
        self._stop = threading.Event()  # set by stop(): no thread of this worker runs again until start()
        self._thread: threading.Thread | None = None  # the current thread
        self._cancel = threading.Event()  # the current thread's own stop signal
        self._threads: list[tuple[threading.Thread, threading.Event]] = []  # current + abandoned, for stop()
        self.restarts = 0  # by the watchdog: a dead or hung thread
        self.last_error: str | None = None

    # -- what a worker defines ----------------------------------------------------------------------------

    def _run(self, cancel: threading.Event) -> None:
        """The thread's loop: return (or raise) once `cancel` is set."""
        raise NotImplementedError

    def _active(self) -> bool:
        """Whether the watchdog looks after the worker in its current state (not ended, failed or stopped)."""
        raise NotImplementedError

    def _health(self, now_mono: float) -> str | None:
        """Why a live thread needs a restart (a stall, a batch running too long), or None."""
        return None

    def _on_restart(self, reason: str) -> None:
        """The worker's own state when its thread is replaced (before the fresh one starts)."""

    def _on_fail(self, reason: str) -> None:
        """The worker's own state when it gives up."""

    def _on_stopped(self) -> None:
        """The worker's own state once every thread was joined."""

    # -- threads ------------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        """Start a fresh thread with its own cancel event (caller holds the lock)."""
        cancel = threading.Event()
        thread = threading.Thread(target=self._run, args=(cancel,), name=self._thread_name, daemon=True)
        self._threads = [(t, c) for t, c in self._threads if t.is_alive()]
        self._threads.append((thread, cancel))
        self._thread, self._cancel = thread, cancel
        thread.start()

    def request_stop(self) -> None:
        """Signal every thread to end without waiting (stop() joins them)."""
        with self._lock:
            self._stop.set()
            for _, cancel in self._threads:
                cancel.set()
            self._lock.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and join every thread of this worker, abandoned ones included (those leave once their blocking
        call returns)."""
        timeout = self.stop_timeout_s if timeout is None else timeout
        self.request_stop()
        with self._lock:
            threads = [t for t, _ in self._threads]
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.error("%s: %s thread did not stop within %.0f s", self.name, self._kind, timeout)
        with self._lock:
            self._thread, self._threads = None, []
            self._on_stopped()

    # -- watchdog (service.watchdog.Supervised) -----------------------------------------------------------

    def diagnose(self, now_mono: float) -> str | None:
        """Why the worker needs a restart: its thread died, or `_health` says so; None when healthy or not
        supervised (never started, stopped, failed, ended)."""
        with self._lock:
            if self._thread is None or self._stop.is_set() or not self._active():
                return None
            if not self._thread.is_alive():
                return f"{self._kind} thread died ({self.last_error or 'no error recorded'})"
            return self._health(now_mono)

    def restart(self, reason: str) -> None:
        """Abandon the current thread (dead, or blocked) and start a fresh one."""
        with self._lock:
            if self._thread is None or self._stop.is_set() or not self._active():
                return
            self._cancel.set()
            self.restarts += 1
            self._on_restart(reason)
            self._spawn()
            self._lock.notify_all()

    def fail(self, reason: str) -> None:
        """Out of restarts: abandon the current thread and stay down (stop() still joins it)."""
        with self._lock:
            if self._stop.is_set():
                return
            self._cancel.set()
            self._on_fail(reason)
            self._lock.notify_all()
