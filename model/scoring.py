"""One scorer for everything: evaluation, `ffp score`, the REST clip upload and live cameras.

A window is k+1 preprocessed frames (k past + the real next one). The scorer predicts the next frame and
returns per-frame: PSNR (the paper's score), L_int, L_grad, L_flow, A_t, a local PSNR (the worst patch), the
raw anomaly score, the calibrated score (when calibration is known) and a per-pixel error heatmap.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import ANOMALY_KINDS, ModelConfig, ScoreConfig
from .losses import flow_loss, gradient_loss, intensity_loss, psnr

log = logging.getLogger(__name__)
Forward = Callable[[torch.Tensor], torch.Tensor]
Score = TypeVar("Score", float, np.ndarray)

METRICS = ("psnr", "local_psnr", "l_int", "l_grad", "l_flow", "a_t", "anomaly")


def cell_statistics(cell_error: np.ndarray, cell_speed: np.ndarray) -> dict[str, list[float]]:
    """Per-cell mean and spread of error and speed over normal frames ((N, L) each). A cell's spread is floored
    at the median spread over cells: a cell that nobody crossed in the normal footage has almost none, and would
    turn every passer-by into an alarm."""
    out: dict[str, list[float]] = {}
    for name, x in (("error", cell_error), ("speed", cell_speed)):
        x = np.asarray(x, np.float64)
        std = x.std(0)
        out[f"{name}_mean"] = x.mean(0).tolist()
        out[f"{name}_std"] = np.maximum(std, max(float(np.median(std)), 1e-6)).tolist()
    return out


def cell_anomaly(cell_error: np.ndarray, cell_speed: np.ndarray, cells: dict[str, np.ndarray] | None,
                 kind: str) -> np.ndarray:
    """(B, L) cell errors and speeds -> (B,) raw anomaly of `kind` (ANOMALY_KINDS); without cell statistics,
    the worst patch."""
    if kind == "worst_patch" or cells is None:
        return cell_error.max(1)
    ze = (cell_error - cells["error_mean"]) / cells["error_std"]
    zv = (cell_speed - cells["speed_mean"]) / cells["speed_std"]
    if kind == "cell_error":
        return ze.max(1)
    if kind == "cell_error_speed":
        return (ze + zv).max(1)
    if kind == "cell_max":
        return np.maximum(ze.max(1), zv.max(1))
    if kind == "cell_speed":
        return zv.max(1)
    raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {ANOMALY_KINDS}")


@dataclass(frozen=True)
class Calibration:
    """Statistics of the scores on normal footage (held-out training video), stored with the weights.

    The calibrated score of a frame is z = (anomaly - mean) / std of the raw anomaly score on normal
    footage: causal (no look-ahead, no per-video statistics) and comparable across cameras.
    """

    mean: dict[str, float]
    std: dict[str, float]
    quantiles: dict[str, float]  # of the calibrated score z on the normal footage: p50, p90, p99, p99.9
    frames: int
    source: str
    cells: dict[str, list[float]] | None = None  # cell_statistics() of the same footage

    def z(self, anomaly: Score) -> Score:
        return (anomaly - self.mean["anomaly"]) / max(self.std["anomaly"], 1e-8)

    def adapted(self, mean: float, std: float, frames: int, blend: float) -> Calibration:
        """This calibration moved towards one camera's own anomaly statistics (`mean`, `std` over `frames`
        frames of its footage) by `blend` (1 = the camera's alone). Quantiles are dropped: they described z
        on the original footage."""
        m, s = self.mean["anomaly"], max(self.std["anomaly"], 1e-8)
        return Calibration(mean={**self.mean, "anomaly": (1 - blend) * m + blend * mean},
                           std={**self.std, "anomaly": (1 - blend) * s + blend * std}, quantiles={},
                           frames=frames, source=f"{self.source}, adapted to a camera", cells=self.cells)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        cells = d.get("cells")
        return cls(mean=dict(d["mean"]), std=dict(d["std"]), quantiles=dict(d["quantiles"]),
                   frames=int(d["frames"]), source=str(d["source"]),
                   cells=None if cells is None else {k: [float(x) for x in v] for k, v in cells.items()})

    def cell_arrays(self) -> dict[str, np.ndarray] | None:
        return None if self.cells is None else {k: np.asarray(v, np.float32) for k, v in self.cells.items()}

    @classmethod
    def from_scores(cls, scores: dict[str, np.ndarray], source: str,
                    cells: dict[str, list[float]] | None = None) -> Calibration:
        mean = {k: float(np.mean(v)) for k, v in scores.items() if k in METRICS}
        std = {k: float(np.std(v)) + 1e-8 for k, v in scores.items() if k in METRICS}
        z = (scores["anomaly"] - mean["anomaly"]) / std["anomaly"]
        quantiles = {f"p{q:g}": float(np.percentile(z, q)) for q in (50, 90, 99, 99.9)}
        return cls(mean=mean, std=std, quantiles=quantiles, frames=len(z), source=source, cells=cells)


@dataclass(frozen=True)
class FrameScores:
    """Scores of B frames; every field has the batch as its first axis."""

    psnr: np.ndarray  # (B,) dB, the paper's score (lower = more anomalous)
    local_psnr: np.ndarray  # (B,) dB of the worst patch
    l_int: np.ndarray  # (B,)
    l_grad: np.ndarray  # (B,)
    l_flow: np.ndarray  # (B,)
    a_t: np.ndarray  # (B,) alpha L_int + beta L_grad + gamma L_flow
    anomaly: np.ndarray  # (B,) raw anomaly score, higher = more anomalous (ScoreConfig.anomaly of the cells)
    score: np.ndarray | None  # (B,) calibrated anomaly score z, None without calibration
    heatmap: np.ndarray  # (B, H, W) float32 in [0, 1]: absolute prediction error per pixel
    cell_error: np.ndarray  # (B, L) error of each cell (patch): -PSNR of the patch
    cell_speed: np.ndarray  # (B, L) mean DIS flow speed (last -> real frame, pixels per frame) in each cell

    def __len__(self) -> int:
        return len(self.psnr)

    def metrics(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in METRICS}

    def row(self, i: int) -> dict[str, float | None]:
        """Frame i's scalar scores, JSON-ready."""
        out: dict[str, float | None] = {k: float(getattr(self, k)[i]) for k in METRICS}
        out["score"] = None if self.score is None else float(self.score[i])
        return out


@runtime_checkable
class FrameScorer(Protocol):
    """What scores a stream or a clip: the k+1-frame window rule, preprocessing, batched scoring and the
    calibration the scores were made with. `Predictor` is one; the service wraps it (e.g. behind a lock)."""

    @property
    def num_frames(self) -> int: ...

    @property
    def config(self) -> ModelConfig: ...

    @property
    def calibration(self) -> Calibration | None: ...

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """One decoded uint8 frame -> (C, H, W) float32 in [-1, 1]."""
        ...

    def score(self, windows: np.ndarray) -> FrameScores:
        """(B, k+1, C, H, W) preprocessed windows -> the scores of their last frames."""
        ...


def patch_size(config: ModelConfig, score_config: ScoreConfig) -> int:
    return max(4, round(config.image_size[0] * score_config.patch_fraction))


def patch_mean(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, L) mean of every patch (side `patch`, stride half of it): the cells of the scores."""
    return F.avg_pool2d(x, patch, stride=max(1, patch // 2)).flatten(1)


def patch_psnr(sq_err: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, H, W) squared errors in [0, 1] -> (B, L) PSNR of every patch (side `patch`, stride half of it)."""
    mse = patch_mean(sq_err, patch)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def autocast_for(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def build_forward(generator: nn.Module, config: ModelConfig, device: torch.device, precision: str, *,
                  optimize: bool) -> Forward:
    """The generator as a callable (B, k*C, H, W) -> (B, C, H, W), in `precision`.

    optimize (a frozen generator, CPU, fp32): trace and freeze it, so oneDNN fuses each conv with its ReLU and
    the weights are pre-packed (lite, batch 1, 2 threads: 8.4 ms against 13.0 eager, benchmarks/generator_fps.py).
    Any failure to trace falls back to eager: correctness never depends on the optimisation.
    """
    generator.eval()
    if optimize and device.type == "cpu" and precision == "fp32":
        example = torch.zeros(1, config.num_frames * config.channels, *config.image_size)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings on the shape check: Scorer checks shapes itself
                traced = torch.jit.freeze(torch.jit.trace(generator, example, check_trace=False))  # type: ignore[no-untyped-call]
                traced(example)
            return traced  # type: ignore[no-any-return]
        except Exception:  # an exotic build without oneDNN/TorchScript: eager is slower but the same
            log.warning("could not optimise the generator; running it eagerly", exc_info=True)

    def eager(past: torch.Tensor) -> torch.Tensor:
        with autocast_for(device, precision):
            return generator(past)  # type: ignore[no-any-return]
    return eager


def time_forward(forward: Forward, config: ModelConfig, device: torch.device, *, repeats: int = 5) -> float:
    """Best-of-`repeats` seconds for one batch-1 forward (after one warm-up call)."""
    x = torch.zeros(1, config.num_frames * config.channels, *config.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    best = math.inf
    with torch.inference_mode():
        forward(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            forward(x)
            best = min(best, time.perf_counter() - t0)
    return best


class Scorer:
    """Batched scoring of windows (B, k+1, C, H, W) in [-1, 1]. Owns no state beyond the modules."""

    def __init__(self, generator: nn.Module, flownet: nn.Module | None, config: ModelConfig,
                 score_config: ScoreConfig | None = None, calibration: Calibration | None = None,
                 device: str | torch.device = "cpu", precision: str = "bf16", *, optimize: bool = False,
                 forward: Forward | None = None) -> None:
        self.generator = generator.eval()
        self.flownet = flownet.eval() if flownet is not None else None
        self.config = config
        self.score_config = score_config or ScoreConfig()
        self.calibration = calibration
        self.cells = None if calibration is None else calibration.cell_arrays()
        self.device = torch.device(device)
        self.precision = precision
        self.patch = patch_size(config, self.score_config)
        # optimize=True only for a generator that is no longer trained: a traced copy would not see updates.
        self.forward = forward or build_forward(self.generator, config, self.device, precision, optimize=optimize)

    def weights(self) -> tuple[float, float, float]:
        """(alpha, beta, gamma) of A_t. With calibration each term is scaled by 1/std on normal footage,
        so the three errors count equally instead of by their units."""
        sc = self.score_config
        if self.calibration is None:
            return sc.alpha, sc.beta, sc.gamma
        s = self.calibration.std
        return sc.alpha / s["l_int"], sc.beta / s["l_grad"], sc.gamma / s["l_flow"]

    @torch.inference_mode()
    def __call__(self, windows: torch.Tensor | np.ndarray) -> FrameScores:
        cfg = self.config
        x = torch.as_tensor(windows, dtype=torch.float32)
        expected = (cfg.num_frames + 1, cfg.channels, *cfg.image_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"windows must be (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        x = x.to(self.device)
        past = x[:, :cfg.num_frames].flatten(1, 2).contiguous(memory_format=torch.channels_last)  # (B, k*C, H, W)
        real = x[:, cfg.num_frames]  # (B, C, H, W)
        last = x[:, cfg.num_frames - 1]
        pred = self.forward(past).float()
        if self.score_config.flow == "flownet" and self.flownet is not None:
            with autocast_for(self.device, self.precision):
                l_flow = flow_loss(self.flownet, last, pred, real)
        l_flow_dis, speed = dis_flows(last, pred, real, with_error=self.score_config.flow == "dis")
        if self.score_config.flow == "dis":
            l_flow = l_flow_dis
        elif self.flownet is None:
            l_flow = torch.zeros(len(x), device=self.device)
        l_flow = l_flow.float()
        l_int = intensity_loss(pred, real)
        l_grad = gradient_loss(pred, real)
        frame_psnr = psnr(pred, real)
        abs_err = ((pred - real).abs() / 2).mean(1)  # (B, H, W) in [0, 1]
        # Local error: mean squared error over patches of about a person's size, the worst patch counts.
        cell_psnr = patch_psnr(abs_err.pow(2).unsqueeze(1), self.patch)  # (B, L)
        local_psnr = cell_psnr.amin(1)
        a, b, g = self.weights()
        a_t = a * l_int + b * l_grad + g * l_flow
        def np_(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)

        cell_error, cell_speed = np_(-cell_psnr), np_(patch_mean(speed.unsqueeze(1), self.patch))
        anomaly_np = cell_anomaly(cell_error, cell_speed, self.cells, self.score_config.anomaly).astype(np.float32)
        return FrameScores(
            psnr=np_(frame_psnr), local_psnr=np_(local_psnr), l_int=np_(l_int), l_grad=np_(l_grad),
            l_flow=np_(l_flow), a_t=np_(a_t), anomaly=anomaly_np,
            score=None if self.calibration is None else self.calibration.z(anomaly_np).astype(np.float32),
            heatmap=np_(abs_err), cell_error=cell_error, cell_speed=cell_speed,
        )


def dis_flows(last: torch.Tensor, pred: torch.Tensor, real: torch.Tensor, *, with_error: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV DIS per sample: L_flow = mean |DIS(last, pred) - DIS(last, real)| in pixels ((B,), zeros without
    with_error) and the real motion's speed |DIS(last, real)| per pixel ((B, H, W))."""
    def grey(t: torch.Tensor) -> np.ndarray:  # (B, C, H, W) in [-1, 1] -> (B, H, W) uint8
        return ((t.float().mean(1).clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).cpu().numpy()

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)  # type: ignore[attr-defined]
    errors, speeds = [], []
    for a, p, r in zip(grey(last), grey(pred), grey(real), strict=True):
        real_flow = dis.calc(a, r, None)
        errors.append(float(np.abs(dis.calc(a, p, None) - real_flow).mean()) if with_error else 0.0)
        speeds.append(np.sqrt((real_flow ** 2).sum(-1)))
    return torch.tensor(errors, device=last.device), torch.from_numpy(np.stack(speeds)).to(last.device)


class CausalSmoother:
    """Exponential moving average of a stream's scores: causal, one value in, one out.

    half_life is in frames; 0 disables smoothing. The same object serves `ffp eval`'s causal protocol and a
    live camera's alert engine, so both see the same numbers.
    """

    def __init__(self, half_life: float = 2.0) -> None:
        self.alpha = 1.0 if half_life <= 0 else 1.0 - math.pow(0.5, 1.0 / half_life)
        self.value: float | None = None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value

    def reset(self) -> None:
        self.value = None
