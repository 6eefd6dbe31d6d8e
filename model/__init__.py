"""ffp's model: the future-frame predictor (Liu et al., CVPR 2018), its losses, flow network, scoring,
data, training and evaluation. This package never imports `service`; `service` imports only what is
exported here."""
from .alerts import AlertEngine, AlertParams, CameraCalibration, EventType, EventUpdate
from .checkpoint import WEIGHTS_FORMAT, WeightsError, default_weights_path, safe_torch_load, sha256_file, weights_of
from .clip import (
    CLIP_CAMERA,
    CLIP_FALLBACK_FPS,
    ClipAlerts,
    ScoredFrame,
    clip_event,
    score_frames,
    unscorable,
    window_from_buffer,
    windows_from_frames,
)
from .clock import STREAM_FALLBACK_FPS, FrameKeeper, native_fps, presentation_s, stream_fps
from .config import PRESETS, LossWeights, ModelConfig, ScoreConfig, get_preset
from .data import preprocess_frame
from .footage import Footage, FootageWriter, footage_frames, min_footage_frames, write_json_atomic
from .predictor import Predictor, load_predictor
from .recipes import recipe_model
from .redact import redact_text, redact_url
from .scene import SceneChangeDetector, SceneParams
from .scoring import METRICS, Calibration, CausalSmoother, FrameScorer, FrameScores, Scorer
from .stream import LiveStream, StreamError

__all__ = [
    "CLIP_CAMERA", "CLIP_FALLBACK_FPS", "METRICS", "PRESETS", "STREAM_FALLBACK_FPS", "WEIGHTS_FORMAT", "AlertEngine",
    "AlertParams", "Calibration", "CameraCalibration", "CausalSmoother", "ClipAlerts", "EventType", "EventUpdate",
    "Footage", "FootageWriter", "FrameKeeper", "FrameScorer", "FrameScores", "LiveStream", "LossWeights", "ModelConfig",
    "Predictor", "SceneChangeDetector", "SceneParams", "ScoreConfig", "ScoredFrame", "Scorer", "StreamError",
    "WeightsError", "clip_event", "default_weights_path", "footage_frames", "get_preset", "load_predictor",
    "min_footage_frames", "native_fps", "preprocess_frame", "presentation_s", "recipe_model", "redact_text",
    "redact_url", "safe_torch_load", "score_frames", "sha256_file", "stream_fps", "unscorable", "weights_of",
    "window_from_buffer", "windows_from_frames", "write_json_atomic",
]
