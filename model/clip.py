"""Score a clip (a video file or a sequence of decoded frames) with the one batched scorer.

`ffp score`, `ffp eval` and the service's POST /v1/score all go through `score_frames`: frames are
preprocessed once, grouped into windows of k+1 (frames `frame_stride` apart, cut by
`window_from_buffer`, the rule of model.config.window_rows) and
scored in batches. The first k frames have no history and get no score (None), exactly as a live camera that
has just started. Smoothing the score stream is its consumer's business (the service's alert engine, `ffp eval`'s
protocols, `ffp score`), each with one CausalSmoother. A clip's alerts (`ffp score`, POST /v1/score, `ffp eval`'s
event numbers) come from `ClipAlerts`: the live camera's calibration and alert engine on the clip's timeline.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .alerts import AlertEngine, AlertParams, CameraCalibration, EventUpdate
from .config import ModelConfig, window_rows
from .scoring import Calibration, FrameScorer, FrameScores

CLIP_CAMERA = "clip"  # the camera id of a clip's events (`ffp score`, POST /v1/score)
CLIP_FALLBACK_FPS = 25.0  # the frame rate of a clip that declares none (a folder of frames, a broken header)


def unscorable(frames: int, num_frames: int) -> str | None:
    """Why a clip of `frames` decoded frames has no score (None: it has one): a window needs num_frames frames
    before the one it predicts."""
    if frames == 0:
        return "the clip has no decodable frames"
    if frames <= num_frames:
        return f"the clip needs more than {num_frames} frames to be scored, it has {frames}"
    return None


class ClipAlerts:
    """A clip's scored frames through a fresh camera's calibration and alert engine, frame i at i/fps seconds,
    as the service runs a live camera: `ffp score`, POST /v1/score and `ffp eval`'s event numbers replay clips
    here. `close()` ends an open event at the last frame's time."""

    def __init__(self, calibration: Calibration | None, params: AlertParams, fps: float, *,
                 camera_id: str = CLIP_CAMERA, new_id: Callable[[], str] | None = None) -> None:
        self.fps = fps
        self.camera = CameraCalibration(calibration, params)
        self.engine = AlertEngine(camera_id, params, **({} if new_id is None else {"new_id": new_id}))
        self.time = 0.0

    def update(self, index: int, anomaly: float) -> tuple[float | None, list[EventUpdate]]:
        """Frame `index`'s raw anomaly -> its calibrated score (None while a camera without calibration warms
        up) and the event updates it causes; the engine's `smoothed` and `peak_changed` are of this frame."""
        self.time = index / self.fps
        z = self.camera.z(anomaly, self.time)
        return z, self.engine.update(z, self.time)

    def close(self) -> list[EventUpdate]:
        return self.engine.close(self.time)


def clip_event(u: EventUpdate) -> dict[str, Any]:
    """A clip's event in the fields of a live camera's (the service's EventPublic, images aside), its times in
    seconds from the clip's start. A clip raises anomalies only (no scene changes), so no action."""
    return {"id": u.event_id, "camera_id": u.camera_id, "type": u.type, "action": None,
            "start_ts": round(u.start_ts, 4),
            "end_ts": None if u.end_ts is None else round(u.end_ts, 4), "peak_score": u.peak_score,
            "peak_ts": round(u.peak_ts, 4), "frames": u.frames}


@dataclass(frozen=True)
class ScoredFrame:
    index: int
    metrics: dict[str, float | None] | None  # FrameScores.row(...) or None for the first k frames
    heatmap: np.ndarray | None  # (H, W) float32 in [0, 1]


def window_from_buffer(buffer: Sequence[np.ndarray], num_frames: int, stride: int = 1) -> np.ndarray | None:
    """The window (k+1, C, H, W) ending at the newest frame of `buffer` (oldest first), a copy, cut by
    `window_rows`; None while the buffer holds k frames or fewer. Clips and the service's camera ring both cut
    their windows here."""
    if len(buffer) <= num_frames:
        return None
    return np.stack([buffer[r] for r in window_rows(len(buffer), num_frames, stride)])


def windows_from_frames(frames: Iterable[np.ndarray],
                        config: ModelConfig) -> Iterator[tuple[int, np.ndarray | None]]:
    """Preprocessed frames (C, H, W) -> (index, window (k+1, C, H, W) or None while history fills)."""
    ring: deque[np.ndarray] = deque(maxlen=config.history + 1)
    for i, f in enumerate(frames):
        ring.append(f)
        yield i, window_from_buffer(ring, config.num_frames, config.frame_stride)


def score_frames(predictor: FrameScorer, frames: Iterable[np.ndarray], *, batch_size: int = 8,
                 preprocessed: bool = False, keep_heatmaps: bool = False) -> Iterator[ScoredFrame]:
    """Decoded frames (uint8 BGR/grey) or preprocessed frames -> ScoredFrame per input frame, in order."""
    prepped = frames if preprocessed else (predictor.preprocess(f) for f in frames)
    pending: list[tuple[int, np.ndarray | None]] = []

    def flush() -> Iterator[ScoredFrame]:
        ready = [(i, w) for i, w in pending if w is not None]
        scores: FrameScores | None = predictor.score(np.stack([w for _, w in ready])) if ready else None
        j = 0
        for i, w in pending:
            if w is None:
                yield ScoredFrame(i, None, None)
                continue
            assert scores is not None
            yield ScoredFrame(i, scores.row(j), scores.heatmap[j] if keep_heatmaps else None)
            j += 1
        pending.clear()

    for i, w in windows_from_frames(prepped, predictor.config):
        pending.append((i, w))
        if sum(p[1] is not None for p in pending) >= batch_size:
            yield from flush()
    yield from flush()
