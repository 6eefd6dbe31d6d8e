"""Weights files: save, load, verify. A `Predictor` bundles what scoring needs (generator, flow network,
calibration, preprocessing) and is what `ffp eval`, `ffp score` and the service load.

A weights file is a torch pickle of plain data (loaded with weights_only=True):
    {"format": "ffp-weights-v1", "model_config": {...}, "generator": state_dict,
     "flownet_config": {...} | None, "flownet": state_dict | None, "calibration": {...} | None,
     "score_config": {...}, "meta": {...}}
Shipped files are listed with their sha256 and preset in weights/manifest.json; loading a listed file
verifies both.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .config import FlowNetConfig, ModelConfig, ScoreConfig
from .flownet import FlowNet, freeze
from .scoring import Calibration, Forward, FrameScores, Scorer, build_forward, time_forward
from .unet import Generator

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
DEFAULT_WEIGHTS_NAME = "ffp-ped2-lite.pt"
WEIGHTS_FORMAT = "ffp-weights-v1"
CHECKPOINT_FORMAT = "ffp-checkpoint-v1"  # ffp train's last.pt / best.pt: a weights blob plus optimiser state


def weights_of(blob: Any) -> Any:
    """The weights blob of a training checkpoint, or the blob itself (a weights file, or not ours at all)."""
    return blob["weights"] if isinstance(blob, dict) and blob.get("format") == CHECKPOINT_FORMAT else blob


class WeightsError(RuntimeError):
    """A weights or checkpoint file is missing, corrupt, or made for something else."""


def default_weights_path() -> Path:
    return Path(os.environ.get("FFP_WEIGHTS", WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; weights are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_torch_load(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip errors, unpickling errors, truncated files
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise WeightsError(f"cannot read {path}: corrupt or not an ffp weights file ({type(e).__name__}: "
                           f"{first_line})") from e


def read_manifest(manifest: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    if not manifest.is_file():
        return {}
    return dict(json.loads(manifest.read_text()).get("files", {}))


def verify_checksum(path: Path, manifest: Path | None = None) -> dict[str, Any] | None:
    """If the file is listed in the manifest beside it, check its sha256; returns its manifest entry."""
    path = Path(path)
    manifest = manifest or path.resolve().parent / "manifest.json"
    entry = read_manifest(manifest).get(path.name) if path.resolve().parent == manifest.resolve().parent else None
    if entry is None:
        return None
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise WeightsError(f"checksum mismatch for {path}: expected sha256 {entry['sha256']}, got {actual}; "
                           "the file is corrupt or was replaced (re-fetch it with git, or re-train)")
    return dict(entry)


def record_in_manifest(path: Path, preset: str, extra: dict[str, Any] | None = None,
                       manifest: Path | None = None) -> dict[str, Any]:
    manifest = manifest or Path(path).resolve().parent / "manifest.json"
    files = read_manifest(manifest)
    entry = {"sha256": sha256_file(path), "preset": preset, "bytes": path.stat().st_size, **(extra or {})}
    files[path.name] = entry
    manifest.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return entry


@dataclass
class Predictor:
    """Everything needed to score frames with one trained model."""

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
            "score_config": asdict(self.score_config),
            "meta": self.meta,
        }


def preprocess_frame(frame: np.ndarray, config: ModelConfig) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if config.channels == 1:
        img = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    else:
        img = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    h, w = config.image_size
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    out = img.astype(np.float32) / 127.5 - 1.0
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def pick_device(device: str = "auto") -> tuple[torch.device, str]:
    """'auto' -> CUDA when present, else CPU. Precision: bf16 on CPU and on GPUs that support it, else fp16.
    (For inference on CPU, `fastest_cpu_precision` refines this choice by measuring.)"""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
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
        raise WeightsError(f"{where} is not an ffp weights file (format {blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r})")
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
    score_config = ScoreConfig(**blob.get("score_config", {}))
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
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}" + (
            " (the default weights ship in weights/; set FFP_WEIGHTS or pass --weights)" if path is None else ""))
    entry = verify_checksum(p)
    blob = weights_of(safe_torch_load(p))
    if entry is not None and isinstance(blob, dict) and blob.get("model_config", {}).get("name") != entry["preset"]:
        raise WeightsError(f"{p}: manifest says preset {entry['preset']!r} but the file holds "
                           f"{blob.get('model_config', {}).get('name')!r}")
    return predictor_from_blob(blob, device=device, precision=precision, path=p, expected_preset=expected_preset)


def half_generator(blob: dict[str, Any]) -> dict[str, Any]:
    """The weights blob with its generator stored in float16 (half the bytes); loading casts back to fp32."""
    generator = {k: v.half() if v.is_floating_point() else v for k, v in blob["generator"].items()}
    return {**blob, "generator": generator, "meta": {**blob.get("meta", {}), "stored_dtype": "float16"}}
