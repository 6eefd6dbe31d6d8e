"""CaptureWorker: one thread per camera reads frames, decimates them to the scoring rate, preprocesses each
kept frame once into the camera's ring and hands the newest window to the inference worker.

Live sources (network, webcam, looped files) never wait for inference: a newer window replaces an unscored
one. A file that is not looped never loses a frame: capture blocks until inference took the previous window.
Files are paced at their native fps, so a file behaves like the recording of a camera.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from .frames import CameraState, Window
from .meters import RateMeter
from .ring import RingBuffer
from .settings import CameraSettings
from .sources import DEFAULT_FPS, FrameSource, SourceError, SourceFactory, open_opencv_source
from .urls import SourceSpec, redact_text, redact_url

log = logging.getLogger(__name__)


class WindowSink(Protocol):
    def submit(self, window: Window, *, block: bool, stop: threading.Event) -> None: ...


class Backoff:
    """Exponential backoff with a cap and +-jitter; reset after a good frame."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, jitter: float = 0.2,
                 rng: random.Random | None = None) -> None:
        self.base_s, self.cap_s, self.jitter = base_s, cap_s, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap_s, self.base_s * 2 ** self.attempt)
        self.attempt += 1
        return float(delay * (1 + self._rng.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self.attempt = 0


class CaptureWorker:
    def __init__(self, cam: CameraSettings, spec: SourceSpec, ring: RingBuffer,
                 preprocess: Callable[[np.ndarray], np.ndarray], sink: WindowSink, *,
                 source_factory: SourceFactory = open_opencv_source, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cam = cam
        self.spec = spec
        self.ring = ring
        self._preprocess = preprocess
        self._sink = sink
        self._factory = source_factory
        self._backoff = backoff or Backoff()
        self._clock = clock
        self.live = spec.kind != "file" or cam.loop  # live: drop instead of waiting
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.state: CameraState = "connecting"
        self.reconnects = 0
        self.stalls = 0
        self.last_error: str | None = None
        self.last_frame_at: float | None = None  # monotonic time of the last frame read
        self.frames_read = 0
        self.frames_captured = 0  # kept after decimation, preprocessed and pushed
        self._waiting = False  # blocked on inference (a file): not a stall
        self._pace: list[float] | None = None
        self.read_rate = RateMeter()
        self.captured_rate = RateMeter()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"capture-{self.cam.id}", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("camera %s: capture thread did not stop within %.0f s", self.cam.id, timeout)
        self._set_state("stopped")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set_state(self, state: CameraState) -> None:
        with self._lock:
            if self.state != state:
                log.info("camera %s: %s -> %s", self.cam.id, self.state, state)
                self.state = state

    def _error(self, e: BaseException) -> None:
        msg = redact_text(f"{type(e).__name__}: {e}" if not str(e).startswith("cannot") else str(e))
        self.last_error = msg.replace(str(self.spec.target), redact_url(str(self.spec.target)))
        log.warning("camera %s: %s", self.cam.id, self.last_error)

    # -- watchdog -----------------------------------------------------------------------------------------

    def check(self, now_mono: float) -> None:
        """Called by the watchdog: a live camera that sent no frame for stall_after_s is stalled."""
        with self._lock:
            age = self.frame_age(now_mono)
            if self.state == "live" and not self._waiting and age is not None and age > self.cam.stall_after_s:
                self.state = "stalled"
                self.stalls += 1
                log.warning("camera %s: stalled (no frame for %.1f s)", self.cam.id, age)

    def frame_age(self, now_mono: float | None = None) -> float | None:
        if self.last_frame_at is None:
            return None
        return (time.monotonic() if now_mono is None else now_mono) - self.last_frame_at

    # -- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                outcome = self._session()
                if outcome == "ended" or self._stop.is_set():
                    break
                if outcome == "loop":
                    continue  # a looped file: reopen at once, keep the ring and the pacing clock
                self._pace = None
                self.reconnects += 1
                self._set_state("reconnecting")
                self.ring.clear()  # never predict across the gap
                self._stop.wait(self._backoff.next_delay())
        except Exception:  # a bug, not a camera fault: log it; the watchdog sees a dead thread
            log.exception("camera %s: capture thread crashed", self.cam.id)
            self.last_error = "internal error (see server log)"
        if not self._stop.is_set() and self.state != "ended":
            self._set_state("stalled")

    def _session(self) -> str:
        """Open the source and read until it fails ("failed"), a file ends ("ended") or loops ("loop")."""
        try:
            src = self._factory(self.spec, self.cam)
        except Exception as e:
            self._error(e)
            return "failed"
        try:
            return self._read_loop(src)
        except Exception as e:
            self._error(e)
            return "failed"
        finally:
            try:
                src.close()
            except Exception:  # closing a broken stream may fail too; nothing to do about it
                log.debug("camera %s: close failed", self.cam.id, exc_info=True)

    def _read_loop(self, src: FrameSource) -> str:
        period = 1.0 / self.cam.fps
        native = src.fps or DEFAULT_FPS
        is_file = self.spec.kind == "file"
        if self._pace is None:
            self._pace = [time.monotonic(), 0.0, 0.0]  # start, media time, next due: survive file loops
        pace = self._pace
        got = 0
        while not self._stop.is_set():
            frame = src.read()
            if frame is None:  # end of file
                if got == 0:  # an empty or undecodable file must not spin through reopen at full speed
                    raise SourceError("no frames (empty or undecodable file)")
                if not self.cam.loop:
                    self._set_state("ended")
                    return "ended"
                return "loop"
            got += 1
            now_mono = time.monotonic()
            if is_file:
                # Pace at the native rate; media time keeps running across loops, so decimation stays even.
                pace[1] += 1.0 / native
                delay = pace[0] + pace[1] - now_mono
                if delay > 0 and self._stop.wait(delay):
                    return "failed"
                t = pace[1]
            else:
                t = now_mono - pace[0]
            with self._lock:
                self.last_frame_at = time.monotonic()
                self.frames_read += 1
                if self.state != "live":
                    log.info("camera %s: %s -> live", self.cam.id, self.state)
                    self.state = "live"
            self.read_rate.add()
            self._backoff.reset()
            if t + 1e-6 < pace[2]:
                continue  # decimated: never preprocessed
            pace[2] = max(pace[2] + period, t + period / 2)
            self._keep(frame)
        return "failed"

    def _keep(self, frame: np.ndarray) -> None:
        index = self.frames_captured
        self.frames_captured += 1
        self.captured_rate.add()
        window = self.ring.push(self._preprocess(frame), frame, index, self._clock())
        if window is None:
            return
        self._waiting = not self.live
        try:
            self._sink.submit(window, block=not self.live, stop=self._stop)
        finally:
            self._waiting = False
            self.last_frame_at = time.monotonic()  # time blocked on inference is not frame age
