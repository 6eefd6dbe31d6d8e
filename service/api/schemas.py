"""Pydantic models at the HTTP/WebSocket edge. The core passes frozen dataclasses (service.frames); these
models turn them into documented JSON and never leak a camera URL with credentials in it."""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..settings import CameraSettings
from ..urls import redact_text, redact_url


class CameraCreate(CameraSettings):
    """Body of POST /v1/cameras: the same fields (and validation) as a camera in the settings file."""


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

    @classmethod
    def from_status(cls, status: Any) -> CameraPublic:
        d = dataclasses.asdict(status)
        d["url"] = redact_url(d["url"])
        if d.get("last_error"):
            d["last_error"] = scrub(d["last_error"])
        return cls.model_validate({k: d.get(k) for k in cls.model_fields})


class EventPublic(BaseModel):
    id: str
    camera_id: str
    start_ts: float = Field(description="Unix time the event started.")
    end_ts: float | None = Field(description="Unix time it ended; None while it is still open.")
    peak_score: float = Field(description="Highest smoothed anomaly score (calibrated z units) in the event.")
    peak_ts: float
    frames: int = Field(description="Frames scored while the event was open.")
    snapshot_url: str | None = Field(description="The frame at the peak, as JPEG.")
    heatmap_url: str | None = Field(description="The prediction-error heatmap at the peak, as JPEG.")

    @classmethod
    def from_event(cls, ev: Any) -> EventPublic:
        base = f"/v1/events/{ev.id}"
        return cls(id=ev.id, camera_id=ev.camera_id, start_ts=ev.start_ts, end_ts=ev.end_ts,
                   peak_score=ev.peak_score, peak_ts=ev.peak_ts, frames=ev.frames,
                   snapshot_url=f"{base}/snapshot.jpg" if ev.snapshot_path else None,
                   heatmap_url=f"{base}/heatmap.jpg" if ev.heatmap_path else None)


class EventList(BaseModel):
    events: list[EventPublic]


class FrameScore(BaseModel):
    """One frame of an uploaded clip. The first k frames have no history and score None."""

    index: int
    time: float = Field(description="Seconds from the start of the clip.")
    score: float | None = Field(description="Calibrated anomaly score (z units): higher = more anomalous.")
    smoothed: float | None = Field(None, description="Causal moving average of score (what alerts compare).")
    psnr: float | None = None
    local_psnr: float | None = None
    l_int: float | None = None
    l_grad: float | None = None
    l_flow: float | None = None
    a_t: float | None = Field(None, description="Raw anomaly measure before calibration.")


class ScoreResponse(BaseModel):
    fps: float
    frames: list[FrameScore]
    events: list[dict[str, Any]] = Field(description="Events the live alert logic would raise on this clip.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    cameras: int
    pipeline_running: bool


# --- WebSocket protocol (documented in service/api/live.py) -------------------------------------------------

ScoreKind = Literal["scores", "events"]
ALL_KINDS: tuple[ScoreKind, ...] = ("scores", "events")


class SubscribeRequest(BaseModel):
    """Client -> server. Replaces the connection's subscription; with resume_from, replays stored events."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["subscribe"] = "subscribe"
    cameras: list[str] | None = Field(None, description="Camera ids; None = every camera.")
    kinds: list[ScoreKind] = Field(default_factory=lambda: list(ALL_KINDS))
    resume_from: int | None = Field(None, ge=0, description="Last event seq seen; replay every later one.")


class SubscribedMessage(BaseModel):
    type: Literal["subscribed"] = "subscribed"
    cameras: list[str] | None
    kinds: list[ScoreKind]
    resume_from: int | None
    replayed: int = Field(description="Stored event messages sent before live ones (0 without resume_from).")


class ScoreWsMessage(BaseModel):
    type: Literal["score"] = "score"
    camera_id: str
    frame_index: int
    ts: float = Field(description="Capture time of the scored frame (Unix time).")
    score: float | None
    smoothed: float | None
    psnr: float | None
    local_psnr: float | None
    l_int: float | None
    l_grad: float | None
    l_flow: float | None
    a_t: float | None
    latency_ms: float | None = Field(description="Capture to scored, measured by the pipeline.")
    dropped_scores: int = Field(description="Score messages this connection has dropped so far (slow client).")


class EventWsMessage(BaseModel):
    type: Literal["event"] = "event"
    seq: int = Field(description="Strictly increasing per server; pass the last one seen as resume_from.")
    kind: Literal["start", "update", "end"]
    replay: bool = Field(description="True when sent from the store during a resume.")
    event: EventPublic


class HeartbeatMessage(BaseModel):
    type: Literal["heartbeat"] = "heartbeat"
    ts: float
    dropped_scores: int
    last_seq: int | None = Field(description="Last event seq sent on this connection.")


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    detail: str


def scrub(value: Any) -> Any:
    """Redact credentials in every URL-looking string of a JSON-like value (stats, error texts)."""
    if isinstance(value, str):
        if "://" not in value:
            return value
        return " ".join(redact_url(t) if "://" in t else t for t in redact_text(value).split(" "))
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value
