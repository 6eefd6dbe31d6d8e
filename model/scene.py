"""One camera's pictures -> scene_change events (start / end). Pure: time is an argument.

A camera moved, covered, refocused or zoomed shows a different picture from then on. Its model learnt the old
view, so every later score means nothing; the user needs one `scene_change` event (and a relearn), not a stream
of anomaly alerts. The model's error alone cannot tell this apart from an anomaly: white noise makes the whole
frame unpredictable too, and a model that generalises (or a covered lens: black is easy to predict) predicts the
new view well once k frames of it are in its window. What does set a scene change apart is the picture itself:

  - it moved away from the camera's usual picture (a reference: the running average of its recent normal frames)
    in at least `changed_share` of the image cells, each by far more than that cell varies on normal frames
    (cell_threshold standard deviations of its own normal distance to the reference), and
  - it is steady there: its grey picture differs from the previous frame much less than from the reference, or
    no more than normal frames differ from each other (white noise, or the moment of the jump itself, differ from
    both alike, and far more than normal frames do),
  - held for `hold_s`.

Pictures are compared as small grey thumbnails and their detail, each standardised by its own median and spread,
so that a change of exposure or gain is not a new view. The reference and the cells' normal statistics are learnt
online from the camera's own normal frames (after `warmup_frames` of them); neither moves while the picture is
away from it, so a camera moved back to its view ends the scene change.

  normal   --changed and steady--> pending  --held hold_s--> changed (emits start)
  pending  --not changed, or not steady--> normal
  changed  --back to the reference for hold_s--> normal (emits end)
While pending or changed the camera's anomaly alerts are suppressed (`suppressing`). After a break in the frames
(`restart`) a pending change is held again on frames seen after it, and the first frame's motion is not measured
against a frame from before it.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import cv2
import numpy as np

from .alerts import EventUpdate, OpenEvent
from .bounds import Bounds, out_of_bounds

THUMB = 64  # side of the grey thumbnail the pictures are compared on
CELL = 8  # side of an image cell on the thumbnail: an 8 x 8 grid
# Spread floor of a picture before standardising, in [-1, 1] units (about 6 grey levels): a black (covered)
# frame's compression noise is not blown up into a textured picture.
SPREAD_FLOOR = 0.05
# The least distance to the reference that counts as a change, per picture (grey, detail), in standardised
# units: a cell that never changes on normal frames (a still scene) has no spread to compare with, and
# requantisation (an exposure change: the grey picture moves by about 0.03, the detail by 0.13 on Ped2, cell medians)
# is not a new view (a 1.5 px blur moves the detail by ~0.5, a zoom or another view the grey picture by 0.4-1.3).
MIN_CHANGE = np.array([[0.15], [0.2]], np.float32)
STATS_WINDOW = 200  # the cells' normal statistics average over about this many recent normal frames

SceneState = Literal["normal", "pending", "changed"]


@dataclass(frozen=True)
class SceneParams:
    """The scene-change detector's parameters (the service's SceneSettings convert to this). Times in seconds."""

    enabled: bool = True
    changed_share: float = 0.3
    cell_threshold: float = 5.0
    steady_ratio: float = 0.5
    hold_s: float = 3.0
    reference_half_life_frames: float = 20.0
    warmup_frames: int = 30

    BOUNDS: ClassVar[Bounds] = {
        "changed_share": {"gt": 0, "le": 1}, "cell_threshold": {"gt": 0}, "steady_ratio": {"gt": 0, "le": 1},
        "hold_s": {"ge": 0}, "reference_half_life_frames": {"gt": 0}, "warmup_frames": {"ge": 1},
    }

    def __post_init__(self) -> None:
        wrong = out_of_bounds(self, self.BOUNDS)
        if wrong:
            raise ValueError("; ".join(wrong))


def thumbnail(picture: np.ndarray) -> np.ndarray:
    """A frame ((C, H, W) preprocessed in [-1, 1], or (H, W) grey) -> (2, THUMB, THUMB) float32: the grey picture
    and its detail (absolute Laplacian at the frame's own resolution, which a refocus blurs away), both divided by
    the frame's spread so that exposure and gain do not count."""
    grey = np.asarray(picture.mean(0) if picture.ndim == 3 else picture, np.float32)
    small = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    # Median and interquartile range: a bright object in one corner must not restandardise the whole picture.
    q25, median, q75 = np.percentile(small, (25, 50, 75))
    spread = max(float(q75 - q25) / 1.349, SPREAD_FLOOR)  # the IQR of a normal distribution is 1.349 std
    detail = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3)) / spread
    return np.stack([(small - median) / spread, cv2.resize(detail, (THUMB, THUMB), interpolation=cv2.INTER_AREA)])


def cell_mean(x: np.ndarray) -> np.ndarray:
    """(2, THUMB, THUMB) -> (2, cells) mean of every CELL x CELL cell of each picture."""
    n = THUMB // CELL
    return x.reshape(len(x), n, CELL, n, CELL).mean((2, 4)).reshape(len(x), -1)


class SceneChangeDetector:
    """One camera's pictures -> scene_change event updates."""

    def __init__(self, camera_id: str, params: SceneParams, *,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.camera_id = camera_id
        self.params = params
        self._new_id = new_id
        self._alpha = 1.0 - math.pow(0.5, 1.0 / max(params.reference_half_life_frames, 1e-6))
        self._ref: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._n = 0  # normal frames learnt from
        self._mean: np.ndarray | None = None  # per cell: mean distance to the reference on normal frames
        self._sq: np.ndarray | None = None  # per cell: mean squared distance
        self._motion = np.zeros(2)  # mean and mean square of the grey picture's change between normal frames
        self.state: SceneState = "normal"
        self.share = 0.0  # share of cells changed on the latest frame
        self._since: float | None = None  # pending since / back to the reference since
        self._event: OpenEvent | None = None

    @property
    def suppressing(self) -> bool:
        """The camera's anomaly alerts mean nothing now: its picture is (about to be) another view."""
        return self.state != "normal"

    @property
    def active(self) -> bool:
        return self._event is not None

    def update(self, picture: np.ndarray, now: float) -> list[EventUpdate]:
        """One frame (see `thumbnail`) at time `now` -> event updates."""
        if not self.params.enabled:
            return []
        x = thumbnail(picture)
        prev, self._prev = self._prev, x
        if self._ref is None:
            self._ref = x.copy()
            return []
        if prev is None:  # the first frame after a break: no motion to measure it by
            return []
        d_ref = np.abs(x - self._ref)
        changed = self._changed(cell_mean(d_ref))
        # Steady when the grey picture (a covered lens: its detail is noise) or the detail (a refocus: its grey
        # picture barely moves) stays where it moved to.
        # The grey picture only: the detail of white noise is a steady texture of its own.
        motion = float(np.abs(x[0] - prev[0]).mean())
        steady = motion < self.params.steady_ratio * float(d_ref[0].mean()) or motion <= self._motion_limit()
        if self.state == "normal":
            return self._normal(x, d_ref, motion, changed, steady, now)
        if self.state == "pending":
            return self._pending(changed, steady, now)
        return self._changed_state(changed, now)

    def _changed(self, cells: np.ndarray) -> bool:
        if self._mean is None or self._sq is None or self._n < self.params.warmup_frames:
            self.share = 0.0
            return False
        std = np.sqrt(np.maximum(self._sq - self._mean ** 2, 0.0))
        std = np.maximum(std, np.median(std, axis=1, keepdims=True))
        limit = np.maximum(self._mean + self.params.cell_threshold * std, MIN_CHANGE)
        self.share = float(np.mean((cells > limit).any(0)))  # a cell changed when its grey picture or detail did
        return self.share >= self.params.changed_share

    def _motion_limit(self) -> float:
        mean, sq = self._motion
        return float(mean + self.params.cell_threshold * np.sqrt(max(sq - mean ** 2, 0.0)))

    def _learn(self, x: np.ndarray, d_ref: np.ndarray, motion: float) -> None:
        cells = cell_mean(d_ref)
        self._n += 1
        a = max(1.0 / self._n, 1.0 / STATS_WINDOW)
        self._motion += a * (np.array([motion, motion ** 2]) - self._motion)
        if self._mean is None or self._sq is None:
            self._mean, self._sq = cells.copy(), cells ** 2
        else:
            self._mean += a * (cells - self._mean)
            self._sq += a * (cells ** 2 - self._sq)
        assert self._ref is not None
        self._ref += self._alpha * (x - self._ref)

    def _normal(self, x: np.ndarray, d_ref: np.ndarray, motion: float, changed: bool, steady: bool,
                now: float) -> list[EventUpdate]:
        if not changed:
            self._learn(x, d_ref, motion)
        elif steady:
            self.state, self._since = "pending", now
        return []

    def _pending(self, changed: bool, steady: bool, now: float) -> list[EventUpdate]:
        if not (changed and steady):
            self.state, self._since = "normal", None
            return []
        assert self._since is not None
        if now - self._since < self.params.hold_s:
            return []
        self.state = "changed"
        self._event = OpenEvent(self._new_id(), self.camera_id, "scene_change", self._since, self.share, now, 1)
        self._since = None
        return [self._event.message("start")]

    def _changed_state(self, changed: bool, now: float) -> list[EventUpdate]:
        ev = self._event
        assert ev is not None
        ev.frames += 1
        if changed:
            self._since = None
            return []
        if self._since is None:
            self._since = now
        if now - self._since < self.params.hold_s:
            return []
        return [self._end(self._since)]

    def restart(self) -> None:
        """The camera's frames broke off: a pending change is dropped (it is held again on frames seen from now
        on); a changed view ends by the usual rule (its return before the break counts on)."""
        self._prev = None
        if self.state == "pending":
            self.state, self._since = "normal", None

    def close(self, now: float) -> list[EventUpdate]:
        """End an open scene change now (the camera's model changed, camera removed, service stopping)."""
        if self._event is None:
            return []
        return [self._end(self._since if self._since is not None else now)]

    def _end(self, end_ts: float) -> EventUpdate:
        assert self._event is not None
        msg = self._event.end(end_ts)
        self._event, self._since, self.state = None, None, "normal"
        return msg
