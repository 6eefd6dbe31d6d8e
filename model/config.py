"""Presets are data: a ModelConfig names every architectural choice; one builder turns it into modules."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Arithmetic choices for training and inference ("auto" resolves per device: see train.py and predictor.py).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def window_rows(available: int, num_frames: int, stride: int = 1) -> list[int]:
    """Rows of a buffer of the `available` newest frames (newest last) that form a window: k past frames
    `stride` apart, then the newest (the one predicted). Needs available > k. While the buffer holds fewer than
    k * stride + 1 frames (a clip's or a stream's first frames) the missing older frames are the oldest one
    repeated: the first k frames go unscored whatever the stride, so every stride scores the same frames (the
    paper's protocol drops exactly the first k of each video)."""
    if available <= num_frames:
        raise ValueError(f"a window needs more than {num_frames} frames, got {available}")
    newest = available - 1
    return [*(max(0, newest - j * stride) for j in range(num_frames, 0, -1)), newest]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the generator (and its discriminator) from a checkpoint."""

    name: str = "lite"
    num_frames: int = 4  # k past frames in, frame k+1 predicted
    frame_stride: int = 1  # the k past frames and the predicted one are this many video frames apart
    channels: int = 1  # 1 = grey, 3 = RGB
    image_size: tuple[int, int] = (128, 128)  # (H, W) the frames are resized to
    base_width: int = 32  # width of the first U-Net level; level i has base_width * 2**i
    depth: int = 4  # U-Net levels (3 pooling steps for depth 4)
    residual: bool = True  # predict last frame + tanh(residual) instead of tanh(output)
    disc_widths: tuple[int, ...] = (32, 64, 128, 128)  # PatchGAN filters, strides 2, 2, 2, 1

    def __post_init__(self) -> None:
        h, w = self.image_size
        stride = self.size_multiple
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if h % stride or w % stride:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**(depth-1) = {stride}")
        if self.base_width < 1 or self.depth < 2:
            raise ValueError("base_width must be >= 1 and depth >= 2")

    @property
    def size_multiple(self) -> int:
        """Frame (or training crop) sides must be multiples of this: the U-Net pools depth-1 times by 2."""
        return 2 ** (self.depth - 1)

    @property
    def history(self) -> int:
        """Video frames a full window reaches back from the predicted one (k * frame_stride)."""
        return self.num_frames * self.frame_stride

    def window_rows(self, available: int) -> list[int]:
        """The rows of a window in a buffer of the `available` newest frames (see `window_rows`)."""
        return window_rows(available, self.num_frames, self.frame_stride)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"memory_items"}
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        d = dict(d)
        # `memory_items` sized an optional bottleneck memory that this code does not build; weights files
        # (the shipped ones too) may carry it as 0, meaning none.
        if d.get("memory_items", 0) != 0:
            raise ValueError(f"model_config has memory_items={d['memory_items']}: generators with a bottleneck "
                             "memory are not supported")
        d.pop("memory_items", None)
        for key in ("image_size", "disc_widths"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    # The official architecture: 256x256 RGB, 64/128/256/512, k=4, tanh output (~7.7 M parameters).
    "paper": ModelConfig(
        name="paper", num_frames=4, channels=3, image_size=(256, 256), base_width=64, depth=4,
        residual=False, disc_widths=(128, 256, 512, 512),
    ),
    # The CPU default and the shipped weights' architecture, sized by benchmarks/generator_fps.py (see README):
    # grey 128x128, 16..128 widths, k = 8.
    "lite": ModelConfig(
        name="lite", num_frames=8, channels=1, image_size=(128, 128), base_width=16, depth=4,
        residual=True, disc_widths=(32, 64, 128, 128),
    ),
}


def get_preset(preset: str, **overrides: Any) -> ModelConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], **overrides) if overrides else PRESETS[preset]


@dataclass(frozen=True)
class LossWeights:
    """lambda_int, lambda_grad, lambda_flow, lambda_adv of the paper's objective."""

    intensity: float = 1.0
    gradient: float = 1.0
    flow: float = 2.0
    adversarial: float = 0.05


# The paper's per-dataset defaults (paper-notes: Avenue lambda_int 0.001, Ped1 lambda_flow 0.01).
DATASET_LOSS_WEIGHTS: dict[str, LossWeights] = {
    "ped2": LossWeights(),
    "ped1": LossWeights(flow=0.01),
    "avenue": LossWeights(intensity=0.001),
    "shanghaitech": LossWeights(),
    "default": LossWeights(),
}

# The paper's learning rates (G, D) per dataset.
DATASET_LEARNING_RATES: dict[str, tuple[float, float]] = {
    "ped2": (1e-4, 1e-5),
    "ped1": (1e-4, 1e-5),
    "avenue": (2e-4, 2e-5),
    "shanghaitech": (2e-4, 2e-5),
    "default": (1e-4, 1e-5),
}


@dataclass(frozen=True)
class FlowNetConfig:
    """The small distilled flow CNN (see model/flownet.py)."""

    channels: int = 1
    image_size: tuple[int, int] = (128, 128)
    base_width: int = 16
    depth: int = 4
    flow_scale: float = 4.0  # network output is multiplied by this: flows in pixels at image_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowNetConfig:
        d = dict(d)
        d["image_size"] = tuple(d["image_size"])
        return cls(**d)


# How a frame's cells become its raw anomaly score (model.scoring.cell_anomaly; docs/research/events.md):
#   worst_patch: the worst cell's error, max_c e_c (no statistics needed)
#   cell_error: max_c z(e_c), each cell's error against its own normal mean and spread
#   cell_error_speed: max_c (z(e_c) + z(v_c)), with v_c the cell's DIS flow speed
#   cell_max: max(max_c z(e_c), max_c z(v_c));  cell_speed: max_c z(v_c)
ANOMALY_KINDS = ("worst_patch", "cell_error", "cell_error_speed", "cell_max", "cell_speed")


@dataclass(frozen=True)
class ScoreConfig:
    """How per-pixel errors become per-frame scores."""

    # Side of the square patch for the local error, as a fraction of the frame height. A cyclist or a cart
    # covers a few percent of a Ped2 frame, so a frame-mean error dilutes it; 1/8 of the height is about
    # the size of a person in a surveillance view (chosen from geometry, not from test labels).
    patch_fraction: float = 0.125
    # Weights of A_t = alpha L_int + beta L_grad + gamma L_flow; by default each term is divided by its
    # standard deviation on normal footage when calibration is present (see Calibration.combined_weights).
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    # Flow for the L_flow score: "dis" (OpenCV DIS, FAST preset) or "flownet" (the shipped flow CNN).
    # Measured by benchmarks/flow_scoring.py at 128x128: DIS FAST 0.6 ms per frame (two flows), the flow CNN
    # 50 ms per frame on one CPU thread; the CNN is needed for training (gradients), not for scoring.
    flow: str = "dis"
    # How the cells' errors (and DIS speeds) become the frame's raw anomaly score: ANOMALY_KINDS above.
    # "worst_patch" needs no statistics; the others use the per-cell statistics of the weights' calibration.
    anomaly: str = "worst_patch"

    def __post_init__(self) -> None:
        if self.anomaly not in ANOMALY_KINDS:
            raise ValueError(f"ScoreConfig.anomaly {self.anomaly!r}: expected one of {ANOMALY_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreConfig:
        """A weights file's score_config. The shipped files store an unused empty `extra` mapping: it is
        accepted and dropped, so they load as they are (their sha256 is in the manifest). Any other unknown
        field is refused: a setting this code does not know would otherwise be silently ignored."""
        d = dict(d)
        if d.get("extra") == {}:
            del d["extra"]
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ScoreConfig fields: {sorted(unknown)}")
        return cls(**d)


LR_SCHEDULES: tuple[str, ...] = ("step", "cosine")
SHIP_CHOICES: tuple[str, ...] = ("best", "last")

# The ranges a number of a command or a config may take: the check, and how an error says it.
NUMBER_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda v: isinstance(v, int | float) and math.isfinite(v) and v > 0, "a positive number"),
    "non_negative": (lambda v: isinstance(v, int | float) and math.isfinite(v) and v >= 0, "a number >= 0"),
    "at_least_one": (lambda v: isinstance(v, int) and v >= 1, "at least 1"),
    "count": (lambda v: isinstance(v, int) and v >= 0, "0 or more"),
}


def number_error(rule: str, value: Any) -> str | None:
    """What is wrong with `value` under NUMBER_RULES[rule] ("must be ..., got ..."), or None."""
    check, wording = NUMBER_RULES[rule]
    return None if check(value) else f"must be {wording}, got {value!r}"


def _opt(help: str, **argparse: Any) -> dict[str, Any]:
    """A TrainConfig field's metadata: its `ffp train` help text and argparse extras (choices, metavar).
    `cli=False` keeps a field off the command line."""
    return {"help": help, **argparse}


@dataclass
class TrainConfig:
    """Everything a training run takes, with the only copy of its defaults: `ffp train`'s options are
    derived from these fields (model/cli_args.py) and a recipe (model/recipes/*.yaml) sets some of them."""

    data: Path = field(metadata=_opt("dataset root with training/ (normal videos only)"))
    out: Path = field(metadata=_opt("run folder: last.pt, best.pt, metrics.csv (resumes from it)"))
    preset: str = field(default="lite", metadata=_opt("architecture preset", choices=tuple(sorted(PRESETS))))
    arch: dict[str, Any] = field(default_factory=dict, metadata=_opt(
        "override a field of the preset, e.g. --arch depth=5 (repeatable); the weights record it",
        metavar="FIELD=VALUE"))
    dataset: str | None = field(default=None, metadata=_opt(
        "loss-weight and lr defaults (default: guessed from the data folder's name)",
        choices=tuple(sorted(DATASET_LOSS_WEIGHTS))))
    steps: int = field(default=20000, metadata=_opt("training steps"))
    batch_size: int = field(default=4, metadata=_opt("windows per step"))
    lr_g: float | None = field(default=None, metadata=_opt("generator learning rate (default: the dataset's)"))
    lr_d: float | None = field(default=None, metadata=_opt("discriminator learning rate (default: the dataset's)"))
    lr_decay_step: int | None = field(default=7000, metadata=_opt(
        "step schedule: the rate drops x0.1 here (the paper's Ped2 schedule; 0: never)"))
    lr_schedule: str = field(default="step", metadata=_opt(
        "step: x0.1 at --lr-decay-step; cosine: from the base lr to 0 at --steps", choices=LR_SCHEDULES))
    ema: float | None = field(default=None, metadata=_opt(
        "validate, keep and ship an exponential moving average of G's weights (e.g. 0.999); training goes on "
        "from the raw weights", metavar="DECAY"))
    w_int: float | None = field(default=None, metadata=_opt("lambda_int (default: the dataset's)"))
    w_grad: float | None = field(default=None, metadata=_opt("lambda_grad (default: the dataset's)"))
    w_flow: float | None = field(default=None, metadata=_opt("lambda_flow (default: the dataset's)"))
    w_adv: float | None = field(default=None, metadata=_opt("lambda_adv (default: the dataset's)"))
    flownet: Path = field(default=Path("weights/flownet-lite.pt"), metadata=_opt(
        "the frozen, differentiable flow network the flow loss needs (`ffp train-flow`)"))
    crop: int | None = field(default=None, metadata=_opt(
        "train on random PX x PX crops of the windows (a multiple of the U-Net's pooling, e.g. 64 for lite): "
        "cheaper steps; validation, scoring and the shipped model see whole frames", metavar="PX"))
    holdout: int = field(default=2, metadata=_opt("normal training videos held out for validation and calibration"))
    val_every: int = field(default=500, metadata=_opt("validate (held-out PSNR) every N steps"))
    val_windows: int = field(default=256, metadata=_opt("held-out windows per validation", cli=False))
    log_every: int = field(default=25, metadata=_opt("metrics.csv row every N steps", cli=False))
    max_minutes: float | None = field(default=None, metadata=_opt("time box: stop after this many minutes"))
    seed: int = field(default=0, metadata=_opt("random seed (weights, windows, crops)"))
    threads: int | None = field(default=None, metadata=_opt("torch CPU threads (default: torch's, one per core)"))
    device: str = field(default="auto", metadata=_opt("auto | cpu | cuda[:N]"))
    precision: str = field(default="auto", metadata=_opt(
        "training arithmetic (auto: fp32 on a CPU, bf16 or fp16 autocast on a GPU)", choices=PRECISIONS))
    ship: str = field(default="best", metadata=_opt(
        "the checkpoint the run calibrates and returns, the one to export: best (held-out PSNR) or last",
        choices=SHIP_CHOICES))
    calibration_precision: str = field(default="auto", metadata=_opt(
        "arithmetic of the final calibration on the held-out videos (auto: as scoring picks on this device)",
        choices=PRECISIONS))
    resume: bool = field(default=True, metadata=_opt(
        "resume from --out's last.pt when there is one (--no-resume: start afresh)"))
    init: Path | None = field(default=None, metadata=_opt(
        "start from these weights or checkpoint (same architecture; the image size may differ): fine-tuning; "
        "ignored when --out has a checkpoint to resume"))
    progress: bool = field(default=True, metadata=_opt("show a progress bar", cli=False))

    def __post_init__(self) -> None:
        wrong = [f"{'--' + f.name.replace('_', '-') if f.metadata.get('cli', True) else f.name} {error}"
                 for f in fields(self) if f.name in TRAIN_NUMBER_RULES and getattr(self, f.name) is not None
                 and (error := number_error(TRAIN_NUMBER_RULES[f.name], getattr(self, f.name)))]
        if self.ema is not None and not 0 < self.ema < 1:
            wrong.append(f"--ema must be in (0, 1), got {self.ema}")
        if wrong:
            raise ValueError("; ".join(wrong))


# Which rule of NUMBER_RULES each numeric TrainConfig field keeps (None, where a field allows it, is not checked).
# steps 0 writes the starting weights as the run's checkpoint; lr_decay_step 0 never drops the rate.
TRAIN_NUMBER_RULES: dict[str, str] = {
    "steps": "count", "batch_size": "at_least_one", "lr_g": "positive", "lr_d": "positive",
    "lr_decay_step": "count", "w_int": "non_negative", "w_grad": "non_negative", "w_flow": "non_negative",
    "w_adv": "non_negative", "crop": "at_least_one", "holdout": "count", "val_every": "at_least_one",
    "val_windows": "at_least_one", "log_every": "at_least_one", "max_minutes": "positive", "threads": "at_least_one",
}
