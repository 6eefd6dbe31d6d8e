"""A `Predictor` bundles what scoring needs (generator, flow network, calibration, preprocessing) on one device
in one precision; it is what `ffp eval`, `ffp score` and the service load. Reading and checking the file
itself is `model.checkpoint`'s job."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import (
    WEIGHTS_FORMAT,
    WeightsError,
    default_weights_path,
    require_weights_file,
    safe_torch_load,
    verify_checksum,
    weights_of,
)
from .config import FlowNetConfig, ModelConfig, ScoreConfig
from .data import preprocess_frame
from .flownet import FlowNet, freeze
from .scoring import Calibration, Forward, FrameScores, Scorer, build_forward, time_forward
from .unet import Generator


@dataclass
class Predictor:
    """Everything needed to score frames with one trained model (a `FrameScorer`)."""

    config: ModelConfig
    generator: Generator
    flownet: FlowNet | None
    calibration: Calibration | None
    score_config: ScoreConfig
    meta: dict[str, Any]
    device: torch.device
    precision: str
    path: Path | None = None
    forward: Forward | None = None  # the generator's optimised forward when already built (with_calibration)

    def __post_init__(self) -> None:
        self.scorer = Scorer(self.generator, self.flownet, self.config, self.score_config, self.calibration,
                             self.device, self.precision, optimize=True, forward=self.forward)
        self.forward = self.scorer.forward

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """One decoded frame (H, W, 3) BGR or (H, W) grey uint8 -> (C, h, w) float32 in [-1, 1]."""
        return preprocess_frame(frame, self.config)

    def score(self, windows: np.ndarray | torch.Tensor) -> FrameScores:
        """(B, k+1, C, h, w) preprocessed windows -> per-frame scores."""
        return self.scorer(windows)

    def with_calibration(self, calibration: Calibration | None) -> Predictor:
        return Predictor(self.config, self.generator, self.flownet, calibration, self.score_config, self.meta,
                         self.device, self.precision, self.path, self.forward)

    def weights_blob(self) -> dict[str, Any]:
        return {
            "format": WEIGHTS_FORMAT,
            "model_config": self.config.to_dict(),
            "generator": self.generator.state_dict(),
            "flownet_config": None if self.flownet is None else self.flownet.config.to_dict(),
            "flownet": None if self.flownet is None else self.flownet.state_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "score_config": self.score_config.to_dict(),
            "meta": self.meta,
        }


def pick_device(device: str = "auto") -> tuple[torch.device, str]:
    """'auto' -> CUDA when present, else CPU. Precision: bf16 on CPU and on GPUs that support it, else fp16.
    (For inference on CPU, `fastest_cpu_precision` refines this choice by measuring.)"""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    wrong = ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise wrong from None
    if dev.type not in ("cpu", "cuda"):
        raise wrong
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeightsError("CUDA was requested but is not available on this machine")
    precision = "bf16" if dev.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    return dev, precision


_PRECISION_CACHE: dict[tuple[ModelConfig, int], str] = {}


def fastest_cpu_precision(generator: Generator, config: ModelConfig) -> tuple[str, Forward | None]:
    """bf16 is not always the faster choice on a CPU: without AMX its casts cost more than its kernels save
    (this project's 2-core CPU, batch 1: lite 13.0 ms bf16 against 8.4 fp32 traced, paper 550 against 379,
    benchmarks/generator_fps.py). Time both once per process, preset and thread count; keep the faster.
    Returns the precision and, when it was timed just now, the winning forward (so it is not built twice)."""
    key = (config, torch.get_num_threads())
    if key in _PRECISION_CACHE:
        return _PRECISION_CACHE[key], None
    cpu = torch.device("cpu")
    forwards = {p: build_forward(generator, config, cpu, p, optimize=True) for p in ("fp32", "bf16")}
    repeats = 5 if config.base_width <= 32 else 2  # the paper preset takes ~0.5 s a call
    times = {p: time_forward(f, config, cpu, repeats=repeats) for p, f in forwards.items()}
    best = min(times, key=times.__getitem__)
    _PRECISION_CACHE[key] = best
    return best, forwards[best]


def predictor_from_blob(blob: Any, *, device: str = "auto", precision: str | None = None,
                        path: Path | None = None, expected_preset: str | None = None) -> Predictor:
    where = path or "checkpoint"
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise WeightsError(f"{where} is not an ffp weights file (format {found!r})")
    try:
        config = ModelConfig.from_dict(blob["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{where}: bad model config: {e}") from e
    if expected_preset is not None and config.name != expected_preset:
        raise WeightsError(f"{where} holds preset {config.name!r}, expected {expected_preset!r}")
    dev, auto_precision = pick_device(device)
    generator = Generator(config)
    flownet = None
    try:
        generator.load_state_dict(blob["generator"])
        if blob.get("flownet") is not None:
            flownet = FlowNet(FlowNetConfig.from_dict(blob["flownet_config"]))
            flownet.load_state_dict(blob["flownet"])
    except (KeyError, RuntimeError) as e:
        raise WeightsError(f"{where}: weights do not fit preset {config.name!r}: {e}") from e
    freeze(generator)
    # channels_last: oneDNN's fast path on CPU (measured 13.7 vs 18.8 ms bf16, 9.2 vs 17.8 ms fp32 for lite)
    generator.to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if flownet is not None:
        freeze(flownet).to(dev)
    cal = Calibration.from_dict(blob["calibration"]) if blob.get("calibration") else None
    try:
        score_config = ScoreConfig.from_dict(blob.get("score_config", {}))
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{where}: bad score config: {e}") from e
    forward = None
    if precision is None and dev.type == "cpu":
        auto_precision, forward = fastest_cpu_precision(generator, config)
    return Predictor(config, generator, flownet, cal, score_config, dict(blob.get("meta", {})), dev,
                     precision or auto_precision, Path(path) if path else None, forward)


def load_predictor(path: str | Path | None = None, *, device: str = "auto", precision: str | None = None,
                   expected_preset: str | None = None) -> Predictor:
    """Load a weights file (default: the shipped Ped2 weights), verifying its checksum when it is listed
    in weights/manifest.json. Training checkpoints (ffp train's ckpt files) load too."""
    p = Path(path) if path is not None else default_weights_path()
    require_weights_file(p, "" if path is not None else
                         " (the default weights ship in weights/; set FFP_WEIGHTS or pass --weights)")
    entry = verify_checksum(p)
    blob = weights_of(safe_torch_load(p))
    if (entry is not None and isinstance(blob, dict) and blob.get("format") == WEIGHTS_FORMAT
            and blob.get("model_config", {}).get("name") != entry["preset"]):
        raise WeightsError(f"{p}: manifest says preset {entry['preset']!r} but the file holds "
                           f"{blob.get('model_config', {}).get('name')!r}")
    return predictor_from_blob(blob, device=device, precision=precision, path=p, expected_preset=expected_preset)
