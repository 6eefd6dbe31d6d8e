"""One camera's scores -> events (start / update / end). Pure: time is an argument.

The one alert engine: the service runs it per camera and per uploaded clip, `ffp eval` replays each test
video through it (model/events.py), so the event-level numbers are what a camera would have raised.

Per frame: raw anomaly -> calibrated z (`CameraCalibration`: Calibration.z with the weights' calibration, or with
the one its warm-up adapts to the camera) -> `AlertEngine`: causal EMA (the CausalSmoother `ffp eval` uses) ->
hysteresis:
  idle     --z >= on, held for min_duration, not in cooldown--> active  (emits start; start_ts = first crossing)
  idle     --z >= on + strong_margin, not in cooldown--> active         (at once: strong evidence needs no wait)
  active   --z < off for hold seconds--> idle                         (emits end; end_ts = when z fell below off)
  active   --every update_interval--> update (peak, frame count so far)
A break in the camera's frames (a reconnect, a gap, a file's loop seam: `restart`) starts the smoothing and a
pending crossing again: a crossing must be held on frames seen, and the smoothed scores after a break are the ones
the same frames get scored alone (as an uploaded clip). An open event ends by the usual rule: a fall below off
that began before the break counts on.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from .bounds import Bounds, out_of_bounds
from .scoring import Calibration, CausalSmoother

# Without calibration there is no z to read; the camera's own statistics are learnt first.
DEFAULT_WARMUP_S = 5.0
# Durations are differences of frame timestamps (i / fps): 0.7 - 0.3 is 0.39999999999999997, so a 0.4 s minimum
# would wait one frame more on some frames than on others. Durations are compared with this much slack.
TIME_SLACK_S = 1e-6
MIN_WARMUP_FRAMES = 10


@dataclass(frozen=True)
class AlertParams:
    """The alert engine's parameters (the service's AlertSettings convert to this). Times in seconds, scores in
    z units of the calibrated score.

    The thresholds come from normal footage, never from test episodes: on_threshold is the largest smoothed
    calibrated score of the shipped weights on their held-out normal videos (Ped2 15-16: 2.24) plus a margin of
    0.5, rounded up to 0.05, so that footage raises no alarm; off_threshold keeps a gap of 1.5 below it
    (docs/research/events.md). strong_margin (off: None) lets a crossing that far above on_threshold raise at
    once: quicker on pseudo-anomalies, but on Ped2's test set one two-frame normal spike then opens an alert that
    costs an episode, so every alert waits min_duration_s by default."""

    on_threshold: float = 2.75
    off_threshold: float = 1.25
    min_duration_s: float = 0.4
    hold_s: float = 1.0
    cooldown_s: float = 2.0
    smoothing_half_life_frames: float = 2.0
    warmup_s: float = 0.0
    warmup_blend: float = 0.5
    update_interval_s: float = 1.0
    strong_margin: float | None = None

    BOUNDS: ClassVar[Bounds] = {
        "min_duration_s": {"ge": 0}, "hold_s": {"ge": 0}, "cooldown_s": {"ge": 0},
        "smoothing_half_life_frames": {"ge": 0}, "warmup_s": {"ge": 0}, "warmup_blend": {"ge": 0, "le": 1},
        "update_interval_s": {"gt": 0}, "strong_margin": {"ge": 0},
    }

    def __post_init__(self) -> None:
        wrong = out_of_bounds(self, self.BOUNDS)
        if wrong:
            raise ValueError("; ".join(wrong))
        if self.off_threshold > self.on_threshold:
            raise ValueError(f"off_threshold ({self.off_threshold}) must be <= on_threshold ({self.on_threshold})")


EventType = Literal["anomaly", "scene_change"]  # what an event is about (model/scene.py: scene_change)


@dataclass(frozen=True)
class EventUpdate:
    kind: Literal["start", "update", "end"]
    event_id: str
    camera_id: str
    start_ts: float
    end_ts: float | None
    peak_score: float
    peak_ts: float
    frames: int
    type: EventType = "anomaly"


@dataclass
class OpenEvent:
    """An event between its start and its end: what its start, update and end messages report."""

    id: str
    camera_id: str
    type: EventType
    start: float
    peak: float
    peak_ts: float
    frames: int

    def message(self, kind: Literal["start", "update", "end"], end_ts: float | None = None) -> EventUpdate:
        return EventUpdate(kind, self.id, self.camera_id, float(self.start), end_ts, float(self.peak),
                           float(self.peak_ts), int(self.frames), type=self.type)

    def end(self, end_ts: float) -> EventUpdate:
        """The end message; an event never ends before it started."""
        return self.message("end", max(end_ts, float(self.start)))


class _Stats:
    """Welford mean/std of the raw score during warm-up."""

    def __init__(self) -> None:
        self.n, self.mean, self._m2 = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self._m2 += d * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / self.n) if self.n > 1 else 0.0


class CameraCalibration:
    """One camera's calibrated score z = Calibration.z(anomaly).

    With warm-up (warmup_s > 0, and always without the weights' calibration) the mean and std of the raw score
    over the camera's first warmup_s seconds (at least MIN_WARMUP_FRAMES frames) replace the calibration's,
    blended by warmup_blend; until then z uses the weights' calibration, or is None when there is none.
    """

    def __init__(self, calibration: Calibration | None, params: AlertParams) -> None:
        self.calibration = calibration  # what z uses: the adapted one once warm-up ends
        self._blend = params.warmup_blend
        self._warmup_s = params.warmup_s if calibration is not None or params.warmup_s > 0 else DEFAULT_WARMUP_S
        self._warm: _Stats | None = _Stats() if self._warmup_s > 0 else None
        self._t0: float | None = None  # time of the first score

    def z(self, anomaly: float, now: float) -> float | None:
        """One frame's raw anomaly score (higher = more anomalous) at time `now` -> z, None without one."""
        if not math.isfinite(anomaly):
            return None
        if self._t0 is None:
            self._t0 = now
        if self._warm is not None:
            self._warm.add(anomaly)
            if now - self._t0 >= self._warmup_s and self._warm.n >= MIN_WARMUP_FRAMES:
                self.calibration = self._adapt(self._warm)
                self._warm = None
        return None if self.calibration is None else self.calibration.z(anomaly)

    def _adapt(self, stats: _Stats) -> Calibration:
        std = max(stats.std, 1e-6)
        if self.calibration is None:
            return Calibration(mean={"anomaly": stats.mean}, std={"anomaly": std}, quantiles={}, frames=stats.n,
                               source="camera warm-up")
        return self.calibration.adapted(stats.mean, std, stats.n, self._blend)


class AlertEngine:
    """One camera's calibrated scores -> event updates: causal smoothing, then hysteresis."""

    def __init__(self, camera_id: str, params: AlertParams, *,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.camera_id = camera_id
        self.params = params
        self._new_id = new_id
        self._smoother = CausalSmoother(params.smoothing_half_life_frames)
        # Outputs of the latest update() for the caller's score message and snapshots.
        self.score: float | None = None
        self.smoothed: float | None = None
        self.peak_changed = False
        # Hysteresis state.
        self._above_since: float | None = None  # pending: z >= on since then
        self._pending_peak: tuple[float, float] = (-math.inf, 0.0)
        self._pending_frames = 0
        self._event: OpenEvent | None = None
        self._below_since: float | None = None
        self._last_msg = 0.0
        self._last_end = -math.inf

    @property
    def active(self) -> bool:
        return self._event is not None

    @property
    def active_event_id(self) -> str | None:
        return None if self._event is None else self._event.id

    def update(self, z: float | None, now: float) -> list[EventUpdate]:
        """One frame's calibrated score (None: the frame has none, it is skipped) at time `now` -> event updates."""
        self.peak_changed = False
        self.score = z
        if z is None:
            self.smoothed = None
            return []
        s = self.smoothed = self._smoother.update(z)
        cfg = self.params
        if self._event is None:
            return self._idle(s, now, cfg)
        return self._active(s, now, cfg)

    def _idle(self, s: float, now: float, cfg: AlertParams) -> list[EventUpdate]:
        if s < cfg.on_threshold or now - self._last_end < cfg.cooldown_s - TIME_SLACK_S:
            self._above_since = None
            self._pending_peak = (-math.inf, 0.0)
            self._pending_frames = 0
            return []
        if self._above_since is None:
            self._above_since = now
        self._pending_frames += 1
        if s > self._pending_peak[0]:
            self._pending_peak = (s, now)
            self.peak_changed = True
        strong = cfg.strong_margin is not None and s >= cfg.on_threshold + cfg.strong_margin
        if not strong and now - self._above_since < cfg.min_duration_s - TIME_SLACK_S:
            return []
        peak, peak_ts = self._pending_peak
        self._event = OpenEvent(self._new_id(), self.camera_id, "anomaly", self._above_since, peak, peak_ts,
                                self._pending_frames)
        self._above_since, self._below_since, self._last_msg, self._pending_frames = None, None, now, 0
        return [self._event.message("start")]

    def _active(self, s: float, now: float, cfg: AlertParams) -> list[EventUpdate]:
        ev = self._event
        assert ev is not None
        ev.frames += 1
        if s > ev.peak:
            ev.peak, ev.peak_ts = s, now
            self.peak_changed = True
        if s >= cfg.off_threshold:
            self._below_since = None
        elif self._below_since is None:
            self._below_since = now
        if self._below_since is not None and now - self._below_since >= cfg.hold_s - TIME_SLACK_S:
            return [self._end(self._below_since, now)]
        if now - self._last_msg >= cfg.update_interval_s - TIME_SLACK_S:
            self._last_msg = now
            return [ev.message("update")]
        return []

    def restart(self) -> None:
        """The camera's frames broke off: the next score starts the smoothing again, and a crossing before the
        break counts from its first frame after it. An open event stays open (a fall below off before the break
        counts on: frequent short breaks must not hold an event open), and cooldown runs on."""
        self._smoother.reset()
        self._above_since, self._pending_peak, self._pending_frames = None, (-math.inf, 0.0), 0

    def close(self, now: float) -> list[EventUpdate]:
        """End an active event now (camera removed, service stopping)."""
        if self._event is None:
            return []
        return [self._end(self._below_since if self._below_since is not None else now, now)]

    def _end(self, end_ts: float, now: float) -> EventUpdate:
        assert self._event is not None
        msg = self._event.end(end_ts)
        self._event, self._below_since, self._last_end = None, None, now
        return msg
