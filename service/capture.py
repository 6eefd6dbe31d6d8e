"""CaptureWorker: one thread per camera reads frames, decimates them to the scoring rate, preprocesses each
kept frame once into the camera's ring and hands the newest window to the inference worker.

Live sources (network, webcam, looped files) never wait for inference: a newer window replaces an unscored
one. A file that is not looped never loses a frame: capture blocks until inference took the previous window.
Files are paced at their native fps, so a file behaves like the recording of a camera.

The worker reconnects by itself after a source fault. The watchdog (service.watchdog) handles the rest through
`diagnose`/`restart`/`fail`: a thread that died of a bug, and a stall (no new frame for stall_after_s while the
source is open). Frame age counts from when the content of the last frame was due (`StreamClock.fresh_at`),
not from the last successful read: a source that still hands out buffered frames after its server froze
must not count as a live picture.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from model import FrameKeeper, native_fps

from .frames import CameraState, ServedModel, StreamInfo, Window
from .media_time import MediaTimeline
from .meters import RateMeter
from .ring import RingBuffer
from .settings import CameraSettings
from .sources import FrameSource, SourceError, SourceFactory, open_source
from .supervised import SupervisedThread
from .urls import SourceSpec, redact_text, redact_url

log = logging.getLogger(__name__)


# Sees every kept frame (raw BGR, at the camera's fps, before preprocessing) with its capture time and whether
# the history starts afresh with it (the stream's start, a reconnect, a gap): the footage recorder's input.
FrameTap = Callable[[np.ndarray, float, bool], None]


class WindowSink(Protocol):
    def submit(self, window: Window, *, block: bool, stop: threading.Event, catching_up: bool = False) -> None: ...


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


class CaptureWorker(SupervisedThread):
    def __init__(self, cam: CameraSettings, spec: SourceSpec, ring: RingBuffer, model: ServedModel, sink: WindowSink, *,
                 source_factory: SourceFactory = open_source, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(f"camera {cam.id}", kind="capture", thread_name=f"capture-{cam.id}")
        self.cam = cam
        self.spec = spec
        self.ring = ring
        self.model = model  # preprocesses the frames in the ring, and scores the windows cut from it
        self._sink = sink
        self._factory = source_factory
        self._backoff = backoff or Backoff()
        self._clock = clock
        self.live = spec.kind != "file" or cam.loop  # live: drop instead of waiting
        self.state: CameraState = "connecting"
        self.reconnects = 0  # by the thread itself after a source fault
        self.stalls = 0
        self.last_frame_at: float | None = None  # monotonic time of the last frame read
        self.latest_frame: np.ndarray | None = None  # the last frame read (BGR), decimated or not: the live picture
        self.frames_read = 0
        self.frames_captured = 0  # kept after decimation, preprocessed and pushed
        self.stream: StreamInfo | None = None  # what the source sends (its latest session's first frame)
        self.history_resets = 0  # the k-frame history restarted: a gap in a live stream, a file's loop seam
        self._waiting = False  # blocked on inference (a file): not a stall
        self.tap: FrameTap | None = None
        self._timeline = MediaTimeline()  # kept frames' content time (Window.media_ts), across sessions
        self.read_rate = RateMeter()
        self.captured_rate = RateMeter()

    # -- lifecycle (stop, request_stop: SupervisedThread) -------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._spawn()

    def _set_state(self, state: CameraState, cancel: threading.Event | None = None) -> None:
        with self._lock:
            self._set_state_locked(state, cancel)

    def _set_state_locked(self, state: CameraState, cancel: threading.Event | None = None) -> None:
        if cancel is not None and cancel.is_set():
            return  # an abandoned thread no longer speaks for the camera
        if self.state != state:
            log.info("camera %s: %s -> %s", self.cam.id, self.state, state)
            self.state = state

    def _redact(self, msg: str) -> str:
        # The exact URL first: a password holding a space or a quote would end redact_text's URL match early.
        return redact_text(msg.replace(str(self.spec.target), redact_url(str(self.spec.target))))

    def _error(self, e: BaseException, cancel: threading.Event) -> None:
        if cancel.is_set():
            return
        self.last_error = self._redact(f"{type(e).__name__}: {e}" if not str(e).startswith("cannot") else str(e))
        log.warning("camera %s: %s", self.cam.id, self.last_error)

    # -- watchdog (diagnose, restart, fail: SupervisedThread) ---------------------------------------------

    def _active(self) -> bool:
        return self.state not in ("failed", "ended", "stopped")

    def _health(self, now_mono: float) -> str | None:
        """A live camera without a frame for stall_after_s is marked stalled; if it is still stalled at the
        next check (its read is blocked on a frozen server), it needs a restart."""
        age = self.frame_age(now_mono)
        if self._waiting or age is None or age <= self.cam.stall_after_s:
            return None
        if self.state == "live":
            self.state = "stalled"
            self.stalls += 1
            log.warning("camera %s: stalled (no frame for %.1f s)", self.cam.id, age)
            return None
        if self.state == "stalled":
            return f"stalled: no frame for {age:.1f} s"
        return None

    def _on_restart(self, reason: str) -> None:
        self.ring.clear()  # never predict across the gap
        self._set_state_locked("reconnecting")

    def _on_fail(self, reason: str) -> None:
        """Stay 'failed' with the reason as last_error."""
        self.ring.clear()
        self.last_error = self._redact(f"failed: {reason}")
        self._set_state_locked("failed")

    def _on_stopped(self) -> None:
        self._set_state_locked("stopped")

    def set_model(self, model: ServedModel) -> None:
        """Preprocess frames and cut windows for `model` from the next frame on. The history is kept when `model`
        takes the same input as the current one; otherwise the ring starts again at the new model's k and stride
        (its first k frames go unscored)."""
        with self._lock:
            if not model.same_input(self.model):
                cfg = model.scorer.config
                self.ring.resize(cfg.num_frames, cfg.frame_stride)
            self.model = model

    def frame_age(self, now_mono: float | None = None) -> float | None:
        if self.last_frame_at is None:
            return None
        return (time.monotonic() if now_mono is None else now_mono) - self.last_frame_at

    # -- the thread ---------------------------------------------------------------------------------------
    # Faults of the source (opening, reading) are the camera's: reconnect with backoff. Anything else raised
    # here (preprocess, ring, sink) is a bug: the thread dies and the watchdog restarts it within its budget.
    # Every shared-state update checks `cancel`, so a thread the watchdog abandoned changes nothing.

    def _run(self, cancel: threading.Event) -> None:
        # Pacing (start, media time) and decimation survive file loops and are reset on reconnect.
        pace: list[float] = []
        keeper = FrameKeeper(self.cam.fps)
        try:
            while not cancel.is_set():
                outcome = self._session(cancel, pace, keeper)
                if outcome == "ended" or cancel.is_set():
                    break
                if outcome == "loop":
                    # A looped file: reopen at once and keep the pacing clock, but not the history: the
                    # seam jumps from the last scene to the first, and a window across it is no motion at all.
                    self._reset_history(cancel)
                    continue
                pace.clear()
                keeper.outage()
                with self._lock:
                    if cancel.is_set():
                        break
                    self.reconnects += 1
                    self.ring.clear()  # never predict across the gap
                    self._set_state_locked("reconnecting")
                cancel.wait(self._backoff.next_delay())
        except Exception as e:  # a bug, not a camera fault: log it; the watchdog sees a dead thread
            log.exception("camera %s: capture thread crashed", self.cam.id)
            with self._lock:
                if not cancel.is_set():
                    self.last_error = self._redact(f"internal error: {type(e).__name__}: {e}")
                    self._set_state_locked("stalled")

    def _session(self, cancel: threading.Event, pace: list[float], keeper: FrameKeeper) -> str:
        """Open the source and read until it fails ("failed"), a file ends ("ended") or loops ("loop")."""
        try:
            src = self._factory(self.spec, self.cam)
        except Exception as e:  # noqa: BLE001 - any failure to open is this camera's error, never the worker's end
            self._error(e, cancel)
            return "failed"
        try:
            while True:
                outcome = self._read_loop(src, cancel, pace, keeper)
                rewind = getattr(src, "rewind", None)
                if outcome != "loop" or cancel.is_set() or rewind is None or not rewind():
                    return outcome
                self._reset_history(cancel)  # the seam, as on a reopen (see _run)
        finally:
            try:
                src.close()
            except Exception:  # closing a broken stream may fail too; nothing to do about it
                log.debug("camera %s: close failed", self.cam.id, exc_info=True)

    def _read_loop(self, src: FrameSource, cancel: threading.Event, pace: list[float], keeper: FrameKeeper) -> str:
        period = keeper.decimator.period
        native = native_fps(src.fps)
        is_file = self.spec.kind == "file"
        if not is_file or not pace:  # content time starts again at 0: a new StreamClock, or a file's new pacing
            with self._lock:
                if not cancel.is_set():
                    self._timeline.restart()
        if not pace:
            pace[:] = [time.monotonic(), 0.0]
        # The predictor was trained on evenly spaced frames: a window across a hiccup of a live stream (frames
        # lost in the network, a camera that froze for less than stall_after_s) shows every moving thing
        # jumping, a false alarm. The keeper says where the history restarts (a gap, a broken timeline, an
        # outage), so the first k frames after it are not scored.
        clock = keeper.start(1.0 / native)  # live sources: content time of this session's frames
        last_kept_at = 0.0  # monotonic arrival of the frame kept last
        got = 0
        while not cancel.is_set():
            try:
                frame = src.read()
            except Exception as e:  # noqa: BLE001 - a decoder or driver error ends this session, not the worker
                self._error(e, cancel)
                return "failed"
            if frame is None:  # end of file
                if got == 0:  # an empty or undecodable file must not spin through reopen at full speed
                    self._error(SourceError("no frames (empty or undecodable file)"), cancel)
                    return "failed"
                if not self.cam.loop:
                    self._set_state("ended", cancel)
                    return "ended"
                return "loop"
            got += 1
            if got == 1:
                info = StreamInfo(int(frame.shape[1]), int(frame.shape[0]), src.fps, getattr(src, "codec", None))
                with self._lock:
                    self.stream = info
            now_mono = time.monotonic()
            if is_file:
                # Pace at the native rate; media time keeps running across loops, so decimation stays even. The
                # first frame is at 0, like a stream's and `ffp learn`'s, so all decimate it on the same slots.
                t = pace[1]
                pace[1] += 1.0 / native
                delay = pace[0] + t - now_mono
                if delay > 0 and cancel.wait(delay):
                    return "failed"
                fresh = time.monotonic()
                kept = keeper.keep(t)
            else:
                kept = keeper.read(now_mono, getattr(src, "pts_s", None))
                fresh = clock.fresh_at(now_mono)
            with self._lock:
                if cancel.is_set():
                    return "failed"
                self.last_frame_at = max(fresh, self.last_frame_at or fresh)
                self.latest_frame = frame  # the source returns a fresh array per read: no copy needed
                self.frames_read += 1
                if now_mono - self.last_frame_at <= self.cam.stall_after_s:  # an old frame does not end a stall
                    self._set_state_locked("live")
                self._backoff.reset()
            self.read_rate.add()
            if kept is None:
                continue  # decimated: never preprocessed
            # Faster than real time: content advanced half a period more than the wall clock since the frame
            # kept last, i.e. this frame was buffered (the burst at connect, or a reader that fell behind).
            catching_up = (not is_file and kept.previous is not None
                           and (kept.t - kept.previous) - (now_mono - last_kept_at) > period / 2)
            if kept.restart is not None:
                self._reset_history(cancel)
            last_kept_at = now_mono
            self._keep(frame, cancel, kept.t, period, catching_up)
        return "failed"

    def _reset_history(self, cancel: threading.Event) -> None:
        with self._lock:
            if cancel.is_set():
                return
            if len(self.ring):
                self.ring.clear()
                self.history_resets += 1

    def _keep(self, frame: np.ndarray, cancel: threading.Event, t: float, period: float,
              catching_up: bool = False) -> None:
        """One kept frame at content time `t` of the session (`period`: the decimated frame period) into the ring,
        and the window ending at it to inference."""
        wall = self._clock()  # its capture time: the footage tap and the window get the same one
        tap = self.tap
        if tap is not None and not cancel.is_set():
            tap(frame, wall, len(self.ring) == 0)
        model = self.model
        pre = model.scorer.preprocess(frame)
        with self._lock:  # restart() clears the ring and set_model() swaps it under this lock: no stale frame
            if cancel.is_set():
                return
            if self.model is not model:  # swapped while this frame was preprocessed
                model = self.model
                pre = model.scorer.preprocess(frame)
            index = self.frames_captured
            self.frames_captured += 1
            window = self.ring.push(pre, frame, index, wall, model,
                                    media_ts=self._timeline.stamp(t, wall, period))
            self._waiting = window is not None and not self.live
        self.captured_rate.add()
        if window is None:
            return
        if self.live:  # never waits: frame age stays the content's (a stale frame must not make it young)
            self._sink.submit(window, block=False, stop=cancel, catching_up=catching_up)
            return
        try:
            self._sink.submit(window, block=True, stop=cancel)
        finally:
            with self._lock:
                if not cancel.is_set():
                    self._waiting = False
                    self.last_frame_at = time.monotonic()  # time blocked on inference is not frame age
