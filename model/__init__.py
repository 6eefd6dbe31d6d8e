"""ffp's model: the future-frame predictor (Liu et al., CVPR 2018), its losses, flow network, scoring,
data, training and evaluation. This package never imports `service`."""
from .clip import ScoredFrame, score_frames, windows_from_frames
from .config import PRESETS, LossWeights, ModelConfig, ScoreConfig, get_preset
from .scoring import Calibration, CausalSmoother, FrameScores, Scorer
from .weights import Predictor, WeightsError, default_weights_path, load_predictor, preprocess_frame

__all__ = [
    "PRESETS", "Calibration", "CausalSmoother", "FrameScores", "LossWeights", "ModelConfig", "Predictor",
    "ScoreConfig", "ScoredFrame", "Scorer", "WeightsError", "default_weights_path", "get_preset",
    "load_predictor", "preprocess_frame", "score_frames", "windows_from_frames",
]
