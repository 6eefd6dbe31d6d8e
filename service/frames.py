"""The frozen messages that threads pass to each other (pydantic lives only at the edges)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from model import METRICS, EventType, FrameScorer

# failed: the watchdog ran out of restarts (see last_error); the camera stays down until it is added again.
CameraState = Literal["connecting", "live", "stalled", "reconnecting", "ended", "stopped", "failed"]
EventKind = Literal["start", "update", "end"]
# learning: recording footage; training: its model trains in a process of its own; armed: a model alerts on its
# scores (its own, or the shipped one with use_shipped); unarmed: scores are published, no alert is raised.
CameraMode = Literal["learning", "training", "armed", "unarmed"]
# The scorer's metrics that a score message and a clip's frame report, in METRICS' order. The raw anomaly score is
# reported calibrated instead, as `score`.
REPORTED_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m != "anomaly")
# What the user is prompted to do about an event of each type (none for an anomaly).
EventAction = Literal["relearn"]
ACTIONS: dict[str, EventAction] = {"scene_change": "relearn"}


SHIPPED = "shipped"  # the version name of the service's default model (settings.weights)


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A model the inference worker scores with, and what names it in stats. Compared by identity: windows are
    batched per ServedModel, and a window cut for one model is never scored by another."""

    scorer: FrameScorer  # a Predictor in the service
    version: str  # SHIPPED or a registry version ("v0003")
    sha256: str | None  # of its weights file, when known

    def same_input(self, other: ServedModel) -> bool:
        """Both preprocess frames alike and cut windows alike: a ring of frames for one serves the other."""
        a, b = self.scorer.config, other.scorer.config
        return (a.num_frames, a.frame_stride, a.channels, a.image_size) == (
            b.num_frames, b.frame_stride, b.channels, b.image_size)


@dataclass(frozen=True)
class ModelStatus:
    """Which model scores a camera."""

    version: str  # SHIPPED or a registry version
    sha256: str | None  # the first 12 hex digits of its weights file's sha256
    error: str | None = None  # why the camera's last model change failed (it kept this model)
    # A registry version's facts (None for the shipped model): when it was added, what it learnt from.
    created: float | None = None
    footage: Mapping[str, Any] | None = None
    heldout_psnr: float | None = None
    calibration: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StreamInfo:
    """What a camera sends, as its latest session's first frame showed: every frame is decoded, so its size and
    rate are what decoding costs."""

    width: int
    height: int
    fps: float | None  # the rate the source reports, None when it reports none (or an implausible one)
    codec: str | None  # FFmpeg's codec name for a network camera, the FourCC of a file or webcam


@dataclass(frozen=True)
class CameraStatus:
    id: str
    url: str  # redacted: never holds credentials
    state: CameraState
    fps_target: float
    reconnects: int  # by capture itself after a source fault
    stalls: int
    restarts: int  # by the watchdog: capture thread died or stalled
    last_frame_age_s: float | None  # None before the first frame
    last_error: str | None  # redacted
    frames_captured: int
    frames_scored: int
    frames_skipped: int
    history_resets: int = 0  # k-frame history restarted: a gap in a live stream, a file's loop seam
    on_threshold: float | None = None  # the smoothed score at which this camera's alerts open an event
    model: ModelStatus | None = None
    mode: CameraMode = "armed"
    learning: Mapping[str, Any] | None = None  # service.learning: footage and training progress, None if never
    stream: StreamInfo | None = None  # None before the first frame

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """k+1 preprocessed frames of one camera, ready to score; `frame` is the newest raw BGR frame."""

    camera_id: str
    frame_index: int  # index of the newest frame in the camera's captured (decimated) sequence
    ts: float  # capture wall time of the newest frame
    data: np.ndarray  # (k+1, C, H, W) float32 in [-1, 1]
    frame: np.ndarray  # (H0, W0, 3) uint8 BGR, kept for event snapshots
    model: ServedModel  # the model `data` was preprocessed and cut for: the one that scores it
    # The newest frame's time on the camera's content timeline (service.media_time): what alert and scene-change
    # durations are measured in, as a burst of buffered frames arrives faster than real time.
    media_ts: float
    # The unbroken run of frames it was cut from (service.ring; unique across rings): a new run follows a
    # reconnect, a gap, a file's loop seam or a camera re-made, and the alert engines start their smoothing and
    # their wait for a crossing to hold again with it.
    run: int = 0


@dataclass(frozen=True)
class ScoreMessage:
    camera_id: str
    frame_index: int
    ts: float  # capture wall time
    score: float | None  # calibrated z (None without calibration)
    smoothed: float | None  # what the alert engine compares with its thresholds
    metrics: Mapping[str, float]  # every REPORTED_METRICS name -> its value
    latency_ms: float  # emission time - capture time
    model: str = SHIPPED  # version of the model that scored it
    armed: bool = True  # alerts follow this score; False: published only (no model of the camera's own yet)


@dataclass(frozen=True)
class CameraMessage:
    """A camera's mode, model or learning changed (learning -> training -> armed, a relearn, a rollback, its
    place in the training queue)."""

    camera_id: str
    mode: CameraMode
    model: str  # version of the model that scores it
    learning: Mapping[str, Any] | None


@dataclass(frozen=True)
class Event:
    id: str  # uuid4 hex
    camera_id: str
    start_ts: float
    end_ts: float | None  # None while active
    peak_score: float
    peak_ts: float
    snapshot_path: str | None  # JPEG of the peak frame, relative to data_dir
    heatmap_path: str | None  # JPEG of the peak frame's error heatmap over the frame, relative to data_dir
    frames: int  # scored frames inside the event so far
    type: EventType = "anomaly"  # scene_change: the camera shows another view (model/scene.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventMessage:
    seq: int  # persisted, strictly increasing: a WebSocket client resumes with messages_since(seq)
    kind: EventKind
    event: Event

