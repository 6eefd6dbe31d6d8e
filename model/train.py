"""Training: config -> data -> G, D, frozen flow net -> one loop alternating G and D -> checkpoints.

`train` reads top to bottom like nanoGPT's train.py: resolve the config, build data and models, resume, then
the loop (one step = a generator step and a discriminator step), validation and checkpoints. The schedule is
fixed in advance; `best.pt` is chosen by prediction PSNR on held-out NORMAL training videos, never on test
labels. At the end the score statistics on the same held-out videos are stored in the shipped checkpoint
(`best.pt`, or `last.pt` with `ship: last`) as its calibration.

What a checkpoint keeps and how a run resumes: model.train_state; the metrics log: model.train_log.
"""
from __future__ import annotations

import json
import logging
import math
import random
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .checkpoint import (
    WeightsError,
    atomic_save,
    safe_torch_load,
)
from .config import (
    DATASET_LEARNING_RATES,
    DATASET_LOSS_WEIGHTS,
    LR_SCHEDULES,
    PRECISIONS,
    SHIP_CHOICES,
    LossWeights,
    ModelConfig,
    TrainConfig,
    get_preset,
)
from .data import (
    DataError,
    VideoSource,
    WindowDataset,
    check_crop,
    find_videos,
    load_videos,
    random_crops,
    split_holdout,
)
from .discriminator import PatchDiscriminator
from .flownet import FlowNet, load_flownet
from .losses import discriminator_loss, flow_loss, generator_adversarial_loss, gradient_loss, intensity_loss, psnr
from .predictor import pick_device, predictor_from_blob
from .train_log import MetricsLog
from .train_state import Models, resume, save_checkpoint
from .unet import Generator, count_parameters

log = logging.getLogger(__name__)


# ---- the run's plan: the config resolved against the dataset's defaults, before any data is read ----------

def guess_dataset(data: Path) -> str:
    name = Path(data).resolve().name.lower()
    return next((d for d in DATASET_LOSS_WEIGHTS if d != "default" and d in name), "default")


@dataclass(frozen=True)
class Plan:
    model: ModelConfig
    dataset: str
    loss_weights: LossWeights
    lr_g: float
    lr_d: float


def plan(cfg: TrainConfig) -> Plan:
    """Check the config and fill in what it leaves to the preset and the dataset (loss weights, rates)."""
    model = get_preset(cfg.preset, **cfg.arch)
    dataset = cfg.dataset or guess_dataset(cfg.data)
    w = DATASET_LOSS_WEIGHTS.get(dataset, DATASET_LOSS_WEIGHTS["default"])
    weights = LossWeights(intensity=w.intensity if cfg.w_int is None else cfg.w_int,
                          gradient=w.gradient if cfg.w_grad is None else cfg.w_grad,
                          flow=w.flow if cfg.w_flow is None else cfg.w_flow,
                          adversarial=w.adversarial if cfg.w_adv is None else cfg.w_adv)
    lr_g_default, lr_d_default = DATASET_LEARNING_RATES.get(dataset, DATASET_LEARNING_RATES["default"])
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if cfg.calibration_precision not in PRECISIONS:
        raise ValueError(f"calibration precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {cfg.calibration_precision!r}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be step or cosine, got {cfg.lr_schedule!r}")
    if cfg.ship not in SHIP_CHOICES:
        raise ValueError(f"ship must be one of {', '.join(SHIP_CHOICES)}, got {cfg.ship!r}")
    if cfg.crop is not None:
        check_crop(cfg.crop, model)
    return Plan(model, dataset, weights, cfg.lr_g or lr_g_default, cfg.lr_d or lr_d_default)


def run_meta(cfg: TrainConfig, run: Plan, train_src: list[VideoSource], val_src: list[VideoSource],
             precision: str) -> dict[str, Any]:
    """What the weights record of how they were trained (`step` and `init` are added as the run goes)."""
    meta = {"dataset": run.dataset, "data": str(cfg.data), "train_videos": [s.name for s in train_src],
            "holdout_videos": [s.name for s in val_src], "loss_weights": asdict(run.loss_weights),
            "lr_g": run.lr_g, "lr_d": run.lr_d, "batch_size": cfg.batch_size, "seed": cfg.seed,
            "precision": precision, "lr_schedule": cfg.lr_schedule, "ema": cfg.ema}
    if cfg.crop is not None:
        meta["crop"] = cfg.crop
    return meta


def lr_at(cfg: TrainConfig, step: int, base: float, done: float) -> float:
    """The learning rate at `step`, a fraction `done` (0 to 1) of the way through the run: the cosine follows
    `done` (a run's steps, or a budgeted run's minutes: see LoopControl.done), step decay follows `step`."""
    if cfg.lr_schedule == "cosine":  # no restarts: one decay over the whole run
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, done))))
    return base * (0.1 if cfg.lr_decay_step and step >= cfg.lr_decay_step else 1.0)


# ---- build: data and models ---------------------------------------------------------------------------

@dataclass
class Data:
    train_src: list[VideoSource]
    val_src: list[VideoSource]
    train: WindowDataset
    val: WindowDataset | None
    val_videos: list[np.ndarray]
    val_idx: np.ndarray  # the validation windows, spread evenly over the held-out videos


def build_data(cfg: TrainConfig, config: ModelConfig, train_src: list[VideoSource], val_src: list[VideoSource],
               train_videos: list[np.ndarray], val_videos: list[np.ndarray]) -> Data:
    """A run's data from videos already in memory: training windows (float or uint8 videos, see WindowDataset),
    the held-out videos (float, (T, C, H, W)) for validation and calibration."""
    train_set = WindowDataset(train_videos, config.num_frames, config.frame_stride)
    val_set = WindowDataset(val_videos, config.num_frames, config.frame_stride) if val_videos else None
    val_idx = (np.linspace(0, len(val_set) - 1, min(cfg.val_windows, len(val_set))).astype(int)
               if val_set is not None else np.array([], int))
    return Data(train_src, val_src, train_set, val_set, val_videos, val_idx)


def load_data(cfg: TrainConfig, config: ModelConfig) -> Data:
    """Normal training videos only; the last `holdout` videos are held out for validation and calibration."""
    sources = find_videos(cfg.data, "training")
    train_src, val_src = split_holdout(sources, cfg.holdout)
    log.info("training on %d videos, validating on %d held-out normal videos", len(train_src), len(val_src))
    train_videos = load_videos(train_src, config, cfg.progress)
    val_videos = load_videos(val_src, config, cfg.progress) if val_src else []
    return build_data(cfg, config, train_src, val_src, train_videos, val_videos)


def place_data(data: Data, device: torch.device) -> None:
    """On a GPU, keep the frames there when they take under a quarter of its free memory."""
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    frames_bytes = data.train.nbytes + (data.val.nbytes if data.val is not None else 0)
    if frames_bytes < free // 4:  # leave the rest to the models and their activations
        data.train.to(device)
        if data.val is not None:
            data.val.to(device)
        log.info("training frames on %s: %.2f GB", device, frames_bytes / 1e9)


def build_models(cfg: TrainConfig, run: Plan, device: torch.device) -> Models:
    config = run.model
    generator = Generator(config).to(device)
    if device.type == "cpu":  # oneDNN's fast layout on a CPU, as for inference (model/predictor.py)
        generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    discriminator = PatchDiscriminator(config.channels, config.disc_widths).to(device)
    flownet: FlowNet | None = None
    if run.loss_weights.flow > 0:
        if not Path(cfg.flownet).is_file():
            raise DataError(f"the flow loss needs a trained flow network (--flownet, got {cfg.flownet}); "
                            "train one with `ffp train-flow` or pass --no-flow")
        flownet = load_flownet(Path(cfg.flownet)).to(device)
        if not flownet.takes(config.channels):  # a size difference is fine: it resizes to its grid
            raise WeightsError(f"flow network {cfg.flownet} is for {flownet.config.channels}-channel frames, "
                               f"the generator uses {config.channels}")
    opt_g = torch.optim.Adam(generator.parameters(), lr=run.lr_g)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=run.lr_d)
    log.info("generator %s: %d parameters; discriminator %d", config.name, count_parameters(generator),
             count_parameters(discriminator))
    return Models(generator, discriminator, flownet, opt_g, opt_d)


# ---- one training step: the generator step, then the discriminator step ------------------------------

def sample_batch(windows: WindowDataset, cfg: TrainConfig, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, k+1, C, H, W): random training windows, or random crops of them."""
    idx = torch.randint(len(windows), (cfg.batch_size,), generator=gen)
    batch = [windows[int(i)] for i in idx]
    if cfg.crop is not None:  # drawn only when on, so that runs without crops keep their random stream
        batch = random_crops(batch, cfg.crop, gen)
    return torch.stack(batch).to(device)


def train_step(models: Models, batch: torch.Tensor, weights: LossWeights, k: int,
               autocast: AbstractContextManager[Any], scaler: torch.amp.GradScaler,
               crop: bool) -> dict[str, torch.Tensor]:
    """One update of G and one of D; returns the loss terms (tensors on the device, not synced)."""
    generator, discriminator = models.generator, models.discriminator
    past = batch[:, :k].flatten(1, 2)  # (B, k*C, H, W)
    if batch.device.type == "cpu":
        past = past.contiguous(memory_format=torch.channels_last)
    real, last = batch[:, k], batch[:, k - 1]

    # generator step: intensity + gradient + flow + adversarial. D is frozen here so that the generator's
    # backward pass does not also compute (and then discard) D's parameter gradients.
    discriminator.requires_grad_(False)
    with autocast:
        pred = generator(past, crop=crop)
    pred32 = pred.float()
    l_int = intensity_loss(pred32, real).mean()
    l_grad = gradient_loss(pred32, real).mean()
    zero = torch.zeros((), device=batch.device)
    with autocast:
        l_flow = flow_loss(models.flownet, last, pred, real).float().mean() if models.flownet is not None else zero
        l_adv = generator_adversarial_loss(discriminator(pred)).float().mean() if weights.adversarial > 0 else zero
    g_loss = (weights.intensity * l_int + weights.gradient * l_grad + weights.flow * l_flow
              + weights.adversarial * l_adv)
    models.opt_g.zero_grad(set_to_none=True)
    scaler.scale(g_loss).backward()
    scaler.step(models.opt_g)

    # discriminator step (least squares), on the detached prediction
    d_loss = zero
    if weights.adversarial > 0:
        discriminator.requires_grad_(True)
        with autocast:
            d_loss = discriminator_loss(discriminator(real), discriminator(pred.detach())).float().mean()
        models.opt_d.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        scaler.step(models.opt_d)
    scaler.update()
    return {"g": g_loss, "int": l_int, "grad": l_grad, "flow": l_flow, "adv": l_adv, "d": d_loss}


@torch.no_grad()
def update_ema(models: Models, decay: float, step: int) -> None:
    if models.ema is None:
        return
    # the usual warm-up: early on the average follows the raw weights closely, so that the random
    # initialisation does not linger in it for thousands of steps
    decay = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(models.ema.parameters()), list(models.generator.parameters()), 1.0 - decay)


# ---- validate: prediction PSNR of the shipped generator on held-out normal windows ----------------------

@torch.no_grad()
def validate(models: Models, data: Data, k: int, autocast: AbstractContextManager[Any],
             device: torch.device) -> float:
    assert data.val is not None
    shipped = models.shipped
    shipped.eval()
    values = []
    for chunk in np.array_split(data.val_idx, max(1, len(data.val_idx) // 32)):
        w = torch.stack([data.val[int(i)] for i in chunk]).to(device)
        with autocast:
            pred = shipped(w[:, :k].flatten(1, 2))
        values.append(psnr(pred.float(), w[:, k]))
    models.generator.train()
    return float(torch.cat(values).mean())


# ---- the run ------------------------------------------------------------------------------------------

class LoopControl(Protocol):
    """What a caller with a wall-clock budget (model.learn) adds to the loop. Without one, a run is `cfg`'s:
    `cfg.steps` long, stopped early by `cfg.max_minutes`."""

    @property
    def steps(self) -> int | None:
        """The steps the run is expected to end at (a progress figure, None while unknown); the control, not
        this count, ends the run."""
        ...

    def done(self) -> float:
        """How far through the run the next step is, 0 to 1: the fraction the cosine schedule follows."""
        ...

    def after_step(self, step: int, meta: dict[str, Any]) -> bool:
        """After each step, before its validation and checkpoint: records what it needs to resume in `meta`
        (saved with the checkpoint); True stops the run (it validates and saves first)."""
        ...

    def validated(self, step: int, psnr: float) -> None:
        """The held-out PSNR of a validation, after its checkpoints were saved."""
        ...


def train(cfg: TrainConfig, data: Data | None = None, control: LoopControl | None = None) -> Path:
    """Train as `cfg` says, on `data` (default: cfg.data's training videos, `cfg.holdout` held out) and as
    `control` steers it; returns the shipped checkpoint (best.pt or last.pt), calibrated."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = plan(cfg)
    config, weights, k = run.model, run.loss_weights, run.model.num_frames
    device, device_precision = pick_device(cfg.device)
    # "auto" on a CPU is fp32: bf16 autocast's speed depends on the CPU (a step twice as fast with AVX-512 bf16,
    # several times slower without), and where it was faster it did not detect better
    # (docs/research/camera-training.md). On a GPU it is the device's autocast type.
    precision = cfg.precision if cfg.precision != "auto" else "fp32" if device.type == "cpu" else device_precision
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=precision != "fp32")
    scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest convolutions once
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    if data is None:
        data = load_data(cfg, config)
    place_data(data, device)
    models = build_models(cfg, run, device)
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    progress = resume(cfg, config, models, last_path)
    out.mkdir(parents=True, exist_ok=True)
    meta = run_meta(cfg, run, data.train_src, data.val_src, precision)
    if progress.init is not None:
        meta["init"] = progress.init

    def save(path: Path) -> None:
        save_checkpoint(path, cfg, config, models, progress, meta)

    steps = control.steps if control is not None else cfg.steps
    metrics = MetricsLog(out / "metrics.csv", progress.step, steps, config.name, cfg.progress)
    gen = torch.Generator().manual_seed(cfg.seed + progress.step)  # windows and crops: reseeded on resume
    models.generator.train()
    models.discriminator.train()
    try:
        while control is not None or progress.step < cfg.steps:
            done = control.done() if control is not None else progress.step / cfg.steps
            for g in models.opt_g.param_groups:
                g["lr"] = lr_at(cfg, progress.step, run.lr_g, done)
            for g in models.opt_d.param_groups:
                g["lr"] = lr_at(cfg, progress.step, run.lr_d, done)
            batch = sample_batch(data.train, cfg, gen, device)
            losses = train_step(models, batch, weights, k, autocast, scaler, crop=cfg.crop is not None)
            if cfg.ema is not None:
                update_ema(models, cfg.ema, progress.step)
            progress.step += 1
            metrics.update(losses)
            stop = control.after_step(progress.step, meta) if control is not None else progress.step >= cfg.steps

            val_psnr = None
            if data.val is not None and (progress.step % cfg.val_every == 0 or stop):
                val_psnr = validate(models, data, k, autocast, device)
                if val_psnr > progress.best_val:
                    progress.best_val = val_psnr
                    save(best_path)
                save(last_path)
                if control is not None:
                    control.validated(progress.step, val_psnr)
            if progress.step % cfg.log_every == 0 or val_psnr is not None:
                done = control.done() if control is not None else progress.step / cfg.steps
                metrics.row(progress.step, lr_at(cfg, progress.step, run.lr_g, done), val_psnr, progress.best_val)
            if stop:
                break
            if cfg.max_minutes is not None and metrics.minutes() > cfg.max_minutes:
                log.info("time box of %.1f min reached at step %d", cfg.max_minutes, progress.step)
                break
    finally:
        metrics.close()
    save(last_path)
    if data.val is None or not best_path.is_file():
        save(best_path)
    shipped = last_path if cfg.ship == "last" else best_path
    if data.val_videos:
        calibrate_checkpoint(shipped, cfg, device, data, meta["holdout_videos"])
    summary = {"steps": progress.step, "best_val_psnr": progress.best_val, "minutes": metrics.minutes(),
               "checkpoint": str(shipped)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("done: %s", summary)
    return shipped


def calibrate_checkpoint(path: Path, cfg: TrainConfig, device: torch.device, data: Data,
                         holdout_videos: list[str]) -> None:
    """Store the score statistics on the held-out normal videos in the checkpoint (its calibration)."""
    from .evaluate import calibrate_predictor

    ckpt = safe_torch_load(path)
    precision = None if cfg.calibration_precision == "auto" else cfg.calibration_precision
    predictor = predictor_from_blob(ckpt["weights"], device=str(device), precision=precision)
    calibration = calibrate_predictor(predictor, data.val_videos, source=f"{cfg.data} held-out {holdout_videos}")
    ckpt["weights"]["calibration"] = calibration.to_dict()
    atomic_save(ckpt, path)
