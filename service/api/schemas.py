"""Pydantic models at the HTTP/WebSocket edge. The core passes frozen dataclasses (service.frames); these
models turn them into documented JSON and never leak a camera URL with credentials in it."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ..frames import ACTIONS, REPORTED_METRICS
from ..settings import CameraSettings, no_boolean_numbers
from ..urls import redact_text, redact_url


class LearnRequest(BaseModel):
    """How much footage to record and how long to train (defaults: the `learning` settings)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # strict: a number, not true (1.0) nor "5"
    footage_minutes: float | None = Field(None, gt=0, le=24 * 60, strict=True, description="Minutes of footage to "
                                          "record at the camera's fps.")
    train_minutes: float | None = Field(None, gt=0, le=24 * 60, strict=True, description="Training budget, wall "
                                        "clock.")


class CameraCreate(CameraSettings):
    """Body of POST /v1/cameras: the same fields (and validation) as a camera in the settings file, and `learn`
    to start learning the camera's own model at once (the camera is unarmed until then, unless `use_shipped` is
    given as true)."""

    learn: LearnRequest | None = Field(None, description="Record footage of the camera, then train its own model.")

    def settings(self) -> CameraSettings:
        """The camera's settings; with `learn` and no explicit use_shipped, the shipped model does not alert."""
        data = self.model_dump(include=set(CameraSettings.model_fields))
        if self.learn is not None and "use_shipped" not in self.model_fields_set:
            data["use_shipped"] = False
        return CameraSettings.model_validate(data)


class CameraPatch(BaseModel):
    """Body of PATCH /v1/cameras/{id}: the fields to change. The camera keeps its mode, its models and its
    learning (a camera's address changes; its view does not)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    url: str | None = Field(None, description="New source URL (the rules of POST /v1/cameras apply).")
    fps: float | None = Field(None, gt=0, le=120, strict=True, description="New scoring rate.")
    alerts: dict[str, Any] | None = Field(None, description="Per-camera overrides of the alert settings, merged "
                                          "into the camera's (JSON merge patch): a key set to null goes back to the "
                                          "service's setting; `alerts: null` drops every override.")
    use_shipped: bool | None = Field(None, description="Alert on the shipped model's scores without a model of "
                                     "its own.")
    enabled: bool | None = Field(None, description="false: the camera stays configured, with its models and "
                                 "events, but stops reading its stream (state `stopped`); true: it runs again.")


class CameraModelPublic(BaseModel):
    version: str = Field(description="'shipped' (the service's default weights) or the camera's own registry "
                                     "version (vNNNN).")
    sha256: str | None = Field(description="First 12 hex digits of the weights file's sha256 (None: not a file).")
    error: str | None = Field(None, description="Why the camera's last model change failed; it kept this model.")
    created: float | None = Field(None, description="Unix time the version was registered (own models only).")
    footage: dict[str, Any] | None = Field(None, description="What it learnt from: frames, span_s, fps, segments.")
    heldout_psnr: float | None = Field(None, description="Prediction PSNR (dB) on the held-out tail of its footage.")
    calibration: dict[str, Any] | None = Field(None, description="Its calibration: frames, anomaly mean and std, "
                                               "z quantiles.")


class LearningPublic(BaseModel):
    """A camera's learning: footage recorded, then training in a process of its own (queued while every training
    slot is taken: `learning.max_trainings`)."""

    phase: Literal["recording", "queued", "training", "done", "failed", "cancelled"]
    frames_recorded: int
    frames_wanted: int
    segments: int = Field(description="Stretches of continuous footage (an outage starts a new one).")
    footage_minutes: float
    step: int | None = Field(description="Training step (None before training).")
    steps_planned: int | None = Field(
        description="Steps the run is expected to end at: the budget's remaining minutes at the recent step rate.")
    minutes: float | None = Field(description="Minutes trained so far.")
    train_minutes: float
    heldout_psnr: float | None = Field(description="Prediction PSNR (dB) on the held-out tail at the last check.")
    eta_s: float | None = Field(description="Seconds until the camera is armed (recording, queued and training: "
                                "the wait for a training slot included); null while recording a camera whose "
                                "frames do not come (reconnecting, stalled, ended, disabled).")
    queue_position: int | None = Field(None, description="While queued: its place among the cameras waiting for a "
                                       "training slot (1: next).")
    error: str | None = Field(description="Why learning failed (a frozen stream, training error), or, while "
                              "queued, why its training could not start yet (it is tried again).")
    stopped: str | None = Field(description="Why recording stopped before footage_minutes (the disk cap).")
    refresh: bool = Field(False, description="A refresh of the armed camera's own model trains now (the fields "
                          "above are its progress; the camera stays armed with its model meanwhile).")
    next_refresh: float | None = Field(None, description="When its model's next refresh is due (Unix time; None: "
                                       "refresh off, or no model of its own).")
    recent_frames: int | None = Field(None, description="Frames of recent alert-free footage kept for the next "
                                      "refresh.")
    recent_excluded: int | None = Field(None, description="Frames left out of it: during an alert or a scene "
                                        "change, or within refresh_margin_s of one.")
    recent_error: str | None = Field(None, description="Why the recent footage cannot be written (a full disk); "
                                     "it is tried again at each learning poll.")
    last_refresh: dict[str, Any] | None = Field(None, description="The last refresh: time, run, base (the model "
                                                "it started from), frames, heldout_psnr and base_heldout_psnr (both "
                                                "models on the same held-out recent footage), activated, version, "
                                                "error (why it was not activated).")


class ModelVersionPublic(BaseModel):
    version: str
    sha256: str
    bytes: int
    created: float
    preset: str
    footage: dict[str, Any] | None
    heldout_psnr: float | None
    calibration: dict[str, Any] | None
    recipe: str | None
    active: bool


class ModelList(BaseModel):
    active: str | None = Field(description="The version that scores the camera (None: the shipped model).")
    versions: list[ModelVersionPublic] = Field(description="Oldest first.")


class StreamPublic(BaseModel):
    width: int
    height: int
    fps: float | None = Field(description="The frame rate the camera reports (None: none, or an implausible one).")
    codec: str | None = Field(description="FFmpeg's codec name for a network camera (h264, hevc, mjpeg ...), the "
                                          "FourCC of a file or webcam.")


class CameraPublic(BaseModel):
    id: str
    url: str = Field(description="The source URL with any user:password removed.")
    state: str = Field(description="Capture state: connecting, live, reconnecting, stalled, ended, stopped, failed.")
    fps_target: float
    reconnects: int
    stalls: int
    restarts: int = Field(0, description="Capture restarts by the watchdog (thread died or stalled).")
    last_frame_age_s: float | None = Field(description="Seconds since the last frame arrived (None: none yet).")
    last_error: str | None
    frames_captured: int
    frames_scored: int
    frames_skipped: int = Field(description="Windows not scored because inference was behind (dropped).")
    history_resets: int = Field(0, description="Times the k-frame history restarted because frames were not "
                                "evenly spaced (a gap in a live stream, a looped file's seam): the next k frames "
                                "are not scored, so no window spans the jump.")
    on_threshold: float | None = Field(None, description="The smoothed score (z units) at which this camera's "
                                       "alerts open an event (its alert settings).")
    model: CameraModelPublic | None = Field(None, description="The model that scores this camera.")
    mode: Literal["learning", "training", "armed", "unarmed"] = Field(
        "armed", description="learning: recording footage; training: its own model trains (or waits for a "
                             "training slot: learning.phase queued); armed: a model alerts "
                             "on it (its own, or the shipped one with use_shipped); unarmed: scores without alerts.")
    learning: LearningPublic | None = Field(None, description="Its latest learning (None: never asked to learn).")
    stream: StreamPublic | None = Field(None, description="What the camera sends, from its latest session's first "
                                        "frame (None before one): every frame is decoded, so a large, fast stream "
                                        "costs CPU whatever fps_target is; prefer a camera's sub-stream.")

    @classmethod
    def from_status(cls, status: Any) -> CameraPublic:
        d = dataclasses.asdict(status)
        d["url"] = redact_url(d["url"])
        if d.get("last_error"):
            d["last_error"] = scrub(d["last_error"])
        return cls.model_validate({k: d.get(k) for k in cls.model_fields})


class EventPublic(BaseModel):
    """An event of a live camera, or of a clip scored by POST /v1/score (camera_id `clip`, times in seconds from
    the clip's start instead of Unix times)."""

    id: str
    camera_id: str
    type: Literal["anomaly", "scene_change"] = Field(
        "anomaly", description="anomaly: the model could not predict part of the picture. scene_change: the camera "
                               "shows another view (moved, covered, refocused, zoomed); its anomaly alerts are "
                               "held back while it is open, and its model should be relearnt.")
    action: Literal["relearn"] | None = Field(None, description="What the user is prompted to do: 'relearn' the "
                                              "camera's model after a scene_change; None for an anomaly.")
    start_ts: float = Field(description="When the event started: Unix time (a clip's: seconds from its start).")
    end_ts: float | None = Field(description="When it ended, same clock; None while it is still open (a "
                                             "scene_change ends when the camera shows its old view again or its "
                                             "model changes).")
    peak_score: float = Field(description="anomaly: highest smoothed anomaly score (calibrated z units) in the "
                                          "event; scene_change: the share of the picture that changed (0-1).")
    peak_ts: float = Field(description="When the score peaked, same clock.")
    frames: int = Field(description="Frames scored while the event was open.")
    snapshot_url: str | None = Field(description="The frame at the peak (scene_change: the new view) as JPEG, "
                                     "boxed around the region of highest error and captioned with the camera id "
                                     "and the time (a clip's: valid for clip_images_ttl_s, or a data: URL with "
                                     "?images=inline).")
    heatmap_url: str | None = Field(description="The prediction-error heatmap over that frame, as JPEG, boxed "
                                    "and captioned the same way.")

    @classmethod
    def from_event(cls, ev: Any) -> EventPublic:
        base = f"/v1/events/{ev.id}"
        return cls(id=ev.id, camera_id=ev.camera_id, type=ev.type, action=ACTIONS.get(ev.type),
                   start_ts=ev.start_ts, end_ts=ev.end_ts,
                   peak_score=ev.peak_score, peak_ts=ev.peak_ts, frames=ev.frames,
                   snapshot_url=f"{base}/snapshot.jpg" if ev.snapshot_path else None,
                   heatmap_url=f"{base}/heatmap.jpg" if ev.heatmap_path else None)


class EventList(BaseModel):
    events: list[EventPublic]


Model = TypeVar("Model", bound=BaseModel)
METRIC_DOCS = {"psnr": "PSNR of the predicted frame, dB (the paper's score: lower = more anomalous).",
               "local_psnr": "PSNR of the worst patch, dB.",
               "a_t": "alpha L_int + beta L_grad + gamma L_flow, the prediction error the paper trains on."}


def with_metrics(name: str, base: type[Model], *, required: bool, **tail: Any) -> type[Model]:
    """Model `name`: `base`'s fields and docstring, then a float (or None) per REPORTED_METRICS name, then `tail`'s
    fields (given as create_model takes them)."""
    metrics: dict[str, Any] = {m: (float | None, Field(... if required else None, description=METRIC_DOCS.get(m)))
                               for m in REPORTED_METRICS}
    return create_model(name, __base__=base, __doc__=base.__doc__, __module__=__name__, **metrics, **tail)


class _FrameScore(BaseModel):
    """One frame of an uploaded clip. The first k frames have no history and score None."""

    index: int
    time: float = Field(description="Seconds from the start of the clip.")
    score: float | None = Field(description="Calibrated anomaly score (z units): higher = more anomalous.")
    smoothed: float | None = Field(None, description="Causal moving average of score (what alerts compare).")


if TYPE_CHECKING:  # a type checker sees the fixed fields; the metric fields are built from model.scoring.METRICS
    FrameScore = _FrameScore
else:
    FrameScore = with_metrics("FrameScore", _FrameScore, required=False)


class ScoreResponse(BaseModel):
    fps: float
    frames: list[FrameScore]
    events: list[EventPublic] = Field(description="Events the live alert logic would raise on this clip: the live "
                                      "events' fields, times in seconds from the clip's start.")
    images_expire_s: float | None = Field(None, description="Seconds the events' image URLs stay valid (None: "
                                          "the images are inline, or there are no events).")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    cameras: int
    pipeline_running: bool


# --- WebSocket protocol (documented in service/api/live.py) -------------------------------------------------

ScoreKind = Literal["scores", "events"]
MAX_SEQ = 2**63 - 1  # SQLite's largest integer: the store cannot even be asked about a larger seq
ALL_KINDS: tuple[ScoreKind, ...] = ("scores", "events")


class SubscribeRequest(BaseModel):
    """Client -> server. Replaces the connection's subscription; with resume_from, replays stored events."""

    model_config = ConfigDict(extra="forbid")
    _no_boolean_numbers = field_validator("*", mode="before")(no_boolean_numbers)
    type: Literal["subscribe"] = "subscribe"
    cameras: list[str] | None = Field(None, description="Camera ids; None = every camera.")
    kinds: list[ScoreKind] = Field(default_factory=lambda: list(ALL_KINDS))
    resume_from: int | None = Field(None, ge=0, le=MAX_SEQ, description="Last event seq seen; replay every "
                                    "later one.")


class SubscribedMessage(BaseModel):
    type: Literal["subscribed"] = "subscribed"
    cameras: list[str] | None
    kinds: list[ScoreKind]
    resume_from: int | None
    replayed: int = Field(description="Stored event messages sent before live ones (0 without resume_from).")


class _ScoreWsMessage(BaseModel):
    """One scored frame of a live camera."""

    type: Literal["score"] = "score"
    camera_id: str
    frame_index: int
    ts: float = Field(description="Capture time of the scored frame (Unix time).")
    score: float | None = Field(description="Calibrated anomaly score (z units): higher = more anomalous.")
    smoothed: float | None = Field(description="Causal moving average of score (what alerts compare).")
    armed: bool = Field(True, description="False: no model of the camera's own yet; the score raises no alert.")


# dropped_scores comes last: service/api/live.py appends it to the JSON shared by every connection.
_SCORE_WS_TAIL: dict[str, Any] = {
    "latency_ms": (float | None, Field(description="Capture to scored, measured by the pipeline.")),
    "dropped_scores": (int, Field(description="Score messages this connection has dropped so far (slow client).")),
}
if TYPE_CHECKING:
    ScoreWsMessage = _ScoreWsMessage
else:
    ScoreWsMessage = with_metrics("ScoreWsMessage", _ScoreWsMessage, required=True, **_SCORE_WS_TAIL)


class EventWsMessage(BaseModel):
    type: Literal["event"] = "event"
    seq: int = Field(description="Strictly increasing per server; pass the last one seen as resume_from.")
    kind: Literal["start", "update", "end"]
    replay: bool = Field(description="True when sent from the store during a resume.")
    event: EventPublic


class CameraWsMessage(BaseModel):
    """A camera's mode or model changed (learning -> training -> armed, a relearn, a rollback)."""

    type: Literal["camera"] = "camera"
    camera_id: str
    mode: Literal["learning", "training", "armed", "unarmed"]
    model: str = Field(description="Version of the model that scores it ('shipped' or vNNNN).")
    learning: LearningPublic | None


class HeartbeatMessage(BaseModel):
    type: Literal["heartbeat"] = "heartbeat"
    ts: float
    dropped_scores: int
    last_seq: int | None = Field(description="Last event seq sent on this connection.")


def scrub(value: Any) -> Any:
    """Redact credentials in every URL-looking string of a JSON-like value (stats, error texts)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value
