"""Training: config -> data -> G, D, frozen flow net -> one loop alternating G and D -> checkpoints.

Reads top to bottom like nanoGPT's train.py. The schedule is fixed in advance; the checkpoint kept as
`best.pt` is chosen by prediction PSNR on held-out NORMAL training videos, never on test labels. At the end
the score statistics on the same held-out videos are stored in the checkpoint as its calibration.
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import (
    CHECKPOINT_FORMAT,
    WEIGHTS_FORMAT,
    WeightsError,
    atomic_save,
    safe_torch_load,
    sha256_file,
    verify_checksum,
    weights_of,
)
from .config import (
    DATASET_LEARNING_RATES,
    DATASET_LOSS_WEIGHTS,
    PRECISIONS,
    LossWeights,
    ModelConfig,
    ScoreConfig,
    get_preset,
)
from .data import (
    DataError,
    SkipFrameWindows,
    WindowDataset,
    check_crop,
    check_skips,
    find_videos,
    load_videos,
    random_crops,
    split_holdout,
)
from .discriminator import PatchDiscriminator
from .flownet import FlowNet, load_flownet
from .losses import discriminator_loss, flow_loss, generator_adversarial_loss, gradient_loss, intensity_loss, psnr
from .predictor import pick_device, predictor_from_blob
from .scoring import Calibration
from .unet import Generator, count_parameters

log = logging.getLogger(__name__)


@dataclass
class TrainArgs:
    data: Path
    out: Path
    preset: str = "lite"
    dataset: str = "default"  # picks the paper's loss weights and learning rates
    steps: int = 20000
    batch_size: int = 4
    lr_g: float | None = None  # None: the dataset default
    lr_d: float | None = None
    lr_decay_step: int | None = 7000  # x0.1 here (the paper's Ped2 schedule)
    lr_schedule: str = "step"  # step: x0.1 at lr_decay_step | cosine: from the base lr down to 0 at `steps`
    ema: float | None = None  # keep an exponential moving average of G's weights (e.g. 0.999); it is what is
    #                           validated, saved as the generator and shipped; training continues on the raw weights
    loss_weights: LossWeights | None = None  # None: the dataset default
    flownet: Path | None = None  # required when the flow weight is > 0
    holdout: int = 2  # normal training videos held out for validation and calibration
    val_every: int = 500
    snapshot_every: int | None = None  # also keep the shipped (EMA) weights every N steps in snapshots/ (for studies of
    #                                    how a run's checkpoints differ; nothing here picks among them)
    val_windows: int = 256
    log_every: int = 25
    max_minutes: float | None = None
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    precision: str = "auto"  # auto: fp32 on CPU, bf16 on GPUs that support it, else fp16 | fp32 | bf16 | fp16
    resume: bool = True
    init: Path | None = None  # start a new run from these weights (e.g. at another image size: the nets are convolutional)
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides (tests use tiny nets)
    pseudo_skip: float = 0.0  # share of training windows replaced by skip-frame pseudo-anomalies (data.SkipFrameWindows);
    #                           experimental: no gain on Ped2, and it can collapse G into a copier (weights/HISTORY.md)
    pseudo_skips: tuple[int, ...] = (3, 4, 5, 6)  # their speed-ups: above the fastest normal motion (weights/HISTORY.md)
    crop: int | None = None  # train on random crop x crop squares of the windows (data.random_crops); validation
    #                          and the shipped, fully convolutional G see whole frames


def _rng_state() -> dict[str, Any]:
    # Plain tensors and numbers only, so that checkpoints load with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      cached], "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def load_checkpoint(path: Path, config: ModelConfig) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not an ffp training checkpoint")
    saved = ModelConfig.from_dict(ckpt["weights"]["model_config"])
    if saved != config:
        raise WeightsError(f"checkpoint {path} was made for preset {saved.name!r} ({saved}), "
                           f"not for {config.name!r} ({config}); use another --out folder")
    return ckpt


def _init_weights(path: Path, generator: Generator, discriminator: PatchDiscriminator) -> dict[str, Any]:
    """Load a generator (and, from a training checkpoint, its discriminator) of the same architecture. The
    image size may differ: every layer is convolutional, so fine-tuning at a new size starts from them.
    Returns the record of the start kept in the run's meta: file, sha256 and the source run's step."""
    if not path.is_file():
        raise DataError(f"--init: weights file not found: {path}")
    verify_checksum(path)  # a shipped file listed in weights/manifest.json must match its sha256
    ckpt = safe_torch_load(path)
    blob = weights_of(ckpt)
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"--init: {path} is not an ffp weights file or checkpoint")
    try:
        generator.load_state_dict(blob["generator"])
        if ckpt is not blob:
            discriminator.load_state_dict(ckpt["discriminator"])
    except RuntimeError as e:
        raise WeightsError(f"--init: {path} does not fit this architecture (only image_size may differ): {e}") from e
    return {"file": str(path), "sha256": sha256_file(path), "step": blob.get("meta", {}).get("step")}


def train(args: TrainArgs) -> Path:
    # ---- config, device, precision -------------------------------------------------------------------
    if args.threads:
        torch.set_num_threads(args.threads)
    config = get_preset(args.preset, **args.overrides)
    weights = args.loss_weights or DATASET_LOSS_WEIGHTS.get(args.dataset, DATASET_LOSS_WEIGHTS["default"])
    lr_g_default, lr_d_default = DATASET_LEARNING_RATES.get(args.dataset, DATASET_LEARNING_RATES["default"])
    lr_g, lr_d = args.lr_g or lr_g_default, args.lr_d or lr_d_default
    if args.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {args.precision!r}")
    if args.lr_schedule not in ("step", "cosine"):
        raise ValueError(f"lr schedule must be step or cosine, got {args.lr_schedule!r}")
    if args.ema is not None and not 0.0 < args.ema < 1.0:
        raise ValueError(f"--ema must be in (0, 1), got {args.ema}")
    if not 0.0 <= args.pseudo_skip < 1.0:
        raise ValueError(f"--pseudo-skip must be in [0, 1), got {args.pseudo_skip}")
    if args.pseudo_skip > 0:
        check_skips(args.pseudo_skips)  # before the data is decoded
    if args.crop is not None:
        check_crop(args.crop, config)
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise ValueError(f"--snapshot-every must be a positive number of steps, got {args.snapshot_every}")
    device, device_precision = pick_device(args.device)
    # "auto" on a CPU is fp32: bf16 autocast trains 1.4x slower on a CPU without AMX (lite, one thread: 2.2
    # against 3.0 it/s on this project's CPU). On a GPU it is the device's autocast type.
    precision = (args.precision if args.precision != "auto"
                 else "fp32" if device.type == "cpu" else device_precision)
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=precision != "fp32")
    scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest convolutions once
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    out = Path(args.out)

    # ---- data: normal training videos only; the last `holdout` videos are held out ------------------
    sources = find_videos(args.data, "training")
    train_src, val_src = split_holdout(sources, args.holdout)
    log.info("training on %d videos, validating on %d held-out normal videos", len(train_src), len(val_src))
    train_set = WindowDataset(load_videos(train_src, config, args.progress), config.num_frames,
                              config.frame_stride)
    pseudo = SkipFrameWindows(train_set, args.pseudo_skips) if args.pseudo_skip > 0 else None
    val_videos = load_videos(val_src, config, args.progress) if val_src else []
    val_set = WindowDataset(val_videos, config.num_frames, config.frame_stride) if val_videos else None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        frames_bytes = train_set.nbytes + (val_set.nbytes if val_set is not None else 0)
        if frames_bytes < free // 4:  # leave the rest to the models and their activations
            train_set.to(device)
            if val_set is not None:
                val_set.to(device)
            log.info("training frames on %s: %.2f GB", device, frames_bytes / 1e9)
    val_idx = (np.linspace(0, len(val_set) - 1, min(args.val_windows, len(val_set))).astype(int)
               if val_set is not None else np.array([], int))

    # ---- models ------------------------------------------------------------------------------------
    generator = Generator(config).to(device)
    discriminator = PatchDiscriminator(config.channels, config.disc_widths).to(device)
    flownet: FlowNet | None = None
    if weights.flow > 0:
        if args.flownet is None or not Path(args.flownet).is_file():
            raise DataError(f"the flow loss needs a trained flow network (--flownet, got {args.flownet}); "
                            "train one with `ffp train-flow` or pass --no-flow")
        flownet = load_flownet(Path(args.flownet)).to(device)  # frozen, but differentiable
        if not flownet.takes(config.channels):  # a size difference is fine: it resizes to its grid
            raise WeightsError(f"flow network {args.flownet} is for {flownet.config.channels}-channel frames, "
                               f"the generator uses {config.channels}")
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d)
    log.info("generator %s: %d parameters; discriminator %d", config.name, count_parameters(generator),
             count_parameters(discriminator))

    # ---- resume ------------------------------------------------------------------------------------
    step, best_val = 0, -float("inf")
    init_record: dict[str, Any] | None = None  # which weights the run started from, kept across resumes
    last_path, best_path = out / "last.pt", out / "best.pt"
    resumed: dict[str, Any] | None = None
    if args.resume and last_path.is_file():
        ckpt = resumed = load_checkpoint(last_path, config)
        # an EMA run keeps the raw (trained) weights apart from the averaged ones it ships
        generator.load_state_dict(ckpt.get("generator_train", ckpt["weights"]["generator"]))
        discriminator.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        step, best_val = ckpt["step"], ckpt["best_val_psnr"]
        _set_rng_state(ckpt["rng"])
        init_record = ckpt["weights"].get("meta", {}).get("init")
        log.info("resumed from %s at step %d", last_path, step)
    elif args.init is not None:
        init_record = _init_weights(Path(args.init), generator, discriminator)
        log.info("initialised from %s (step %s of its run)", args.init, init_record["step"])
    # The averaged generator is what validation measures, best.pt keeps and `ffp export` ships.
    ema_generator: Generator | None = None
    if args.ema is not None:
        ema_generator = copy.deepcopy(generator).requires_grad_(False)
        if resumed is not None:
            ema_generator.load_state_dict(resumed["weights"]["generator"])
    shipped = ema_generator if ema_generator is not None else generator
    out.mkdir(parents=True, exist_ok=True)

    @torch.no_grad()
    def update_ema() -> None:
        if ema_generator is None:
            return
        # the usual warm-up: early on the average follows the raw weights closely, so that the random
        # initialisation does not linger in it for thousands of steps
        decay = min(float(args.ema), (1 + step) / (10 + step))  # type: ignore[arg-type]
        torch._foreach_lerp_(list(ema_generator.parameters()), list(generator.parameters()), 1.0 - decay)

    def lr_at(s: int, base: float) -> float:
        if args.lr_schedule == "cosine":  # no restarts: one decay over the whole run
            return base * 0.5 * (1.0 + math.cos(math.pi * min(s, args.steps) / args.steps))
        return base * (0.1 if args.lr_decay_step and s >= args.lr_decay_step else 1.0)

    meta = {"dataset": args.dataset, "data": str(args.data), "train_videos": [s.name for s in train_src],
            "holdout_videos": [s.name for s in val_src], "loss_weights": asdict(weights), "lr_g": lr_g,
            "lr_d": lr_d, "batch_size": args.batch_size, "seed": args.seed,
            "precision": precision, "lr_schedule": args.lr_schedule, "ema": args.ema}
    if args.crop is not None:
        meta["crop"] = args.crop
    if pseudo is not None:
        meta["pseudo_skip"] = {"share": args.pseudo_skip, "skips": list(args.pseudo_skips)}
    if init_record is not None:
        meta["init"] = init_record

    def weights_blob(calibration: Calibration | None = None) -> dict[str, Any]:
        return {"format": WEIGHTS_FORMAT, "model_config": config.to_dict(), "generator": shipped.state_dict(),
                "flownet_config": None if flownet is None else flownet.config.to_dict(),
                "flownet": None if flownet is None else flownet.state_dict(),
                "calibration": None if calibration is None else calibration.to_dict(),
                "score_config": asdict(ScoreConfig()), "meta": {**meta, "step": step}}

    def save(path: Path, calibration: Calibration | None = None) -> None:
        ckpt = {"format": CHECKPOINT_FORMAT, "step": step, "best_val_psnr": best_val,
                "weights": weights_blob(calibration), "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": _rng_state(),
                "args": {k: str(v) for k, v in asdict(args).items()}}
        if ema_generator is not None:
            ckpt["generator_train"] = generator.state_dict()
        atomic_save(ckpt, path)

    @torch.no_grad()
    def validate() -> float:
        shipped.eval()
        values = []
        for chunk in np.array_split(val_idx, max(1, len(val_idx) // 32)):
            w = torch.stack([val_set[int(i)] for i in chunk]).to(device)  # type: ignore[index]
            with autocast:
                pred = shipped(w[:, :config.num_frames].flatten(1, 2))
            values.append(psnr(pred.float(), w[:, config.num_frames]))
        generator.train()
        return float(torch.cat(values).mean())

    # ---- the loop ----------------------------------------------------------------------------------
    from tqdm import tqdm

    metrics_path = out / "metrics.csv"
    new_log = not metrics_path.is_file() or step == 0
    metrics_file = open(metrics_path, "w" if new_log else "a", newline="")  # noqa: SIM115 (closed in the finally below)
    writer = csv.writer(metrics_file)
    if new_log:
        writer.writerow(["step", "time_s", "g_loss", "l_int", "l_grad", "l_flow", "l_adv", "d_loss", "l_compact",
                         "l_separate", "lr_g", "val_psnr", "it_per_s"])
    gen = torch.Generator().manual_seed(args.seed + step)
    start = time.monotonic()
    bar = tqdm(total=args.steps, initial=step, desc=f"train {config.name}", disable=not args.progress)
    running: dict[str, torch.Tensor] = {}
    t_last, s_last = time.monotonic(), step
    generator.train()
    discriminator.train()
    try:
        while step < args.steps:
            for g in opt_g.param_groups:
                g["lr"] = lr_at(step, lr_g)
            for g in opt_d.param_groups:
                g["lr"] = lr_at(step, lr_d)
            idx = torch.randint(len(train_set), (args.batch_size,), generator=gen)
            windows = [train_set[int(i)] for i in idx]
            if pseudo is not None:  # drawn only when on, so that runs without them keep their random stream
                fake = (torch.rand(args.batch_size, generator=gen) < args.pseudo_skip).tolist()
                windows = [pseudo.sample(gen) if f else w for f, w in zip(fake, windows)]
            if args.crop is not None:  # drawn only when on, so that runs without crops keep their random stream
                windows = random_crops(windows, args.crop, gen)
            batch = torch.stack(windows).to(device)  # (B, k+1, C, H, W)
            past = batch[:, :config.num_frames].flatten(1, 2)  # (B, k*C, H, W)
            real, last = batch[:, config.num_frames], batch[:, config.num_frames - 1]

            # generator step: intensity + gradient + flow + adversarial. D is frozen here so that the
            # generator's backward pass does not also compute (and then discard) D's parameter gradients.
            discriminator.requires_grad_(False)
            with autocast:
                pred, memory_loss = generator.forward_with_memory_loss(past, crop=args.crop is not None)
            pred32 = pred.float()
            l_compact, l_separate = memory_loss.float().unbind()
            l_int = intensity_loss(pred32, real).mean()
            l_grad = gradient_loss(pred32, real).mean()
            zero = torch.zeros((), device=device)
            with autocast:
                l_flow = flow_loss(flownet, last, pred, real).float().mean() if flownet is not None else zero
                l_adv = (generator_adversarial_loss(discriminator(pred)).float().mean()
                         if weights.adversarial > 0 else zero)
            g_loss = (weights.intensity * l_int + weights.gradient * l_grad + weights.flow * l_flow
                      + weights.adversarial * l_adv)
            if config.memory_items:
                g_loss = g_loss + weights.compactness * l_compact + weights.separateness * l_separate
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(g_loss).backward()
            scaler.step(opt_g)

            # discriminator step (least squares), on the detached prediction
            d_loss = zero
            if weights.adversarial > 0:
                discriminator.requires_grad_(True)
                with autocast:
                    d_loss = discriminator_loss(discriminator(real), discriminator(pred.detach())).float().mean()
                opt_d.zero_grad(set_to_none=True)
                scaler.scale(d_loss).backward()
                scaler.step(opt_d)
            scaler.update()
            update_ema()
            step += 1
            bar.update(1)

            # Running means stay tensors on the device: reading them (float) forces a GPU sync, so that
            # happens only when a row is logged.
            for k, v in (("g", g_loss), ("int", l_int), ("grad", l_grad), ("flow", l_flow), ("adv", l_adv),
                         ("d", d_loss), ("compact", l_compact), ("separate", l_separate)):
                v = v.detach().float()
                running[k] = 0.9 * running[k] + 0.1 * v if k in running else v
            val_psnr = None
            if val_set is not None and (step % args.val_every == 0 or step == args.steps):
                val_psnr = validate()
                if val_psnr > best_val:
                    best_val = val_psnr
                    save(best_path)
                save(last_path)
            if args.snapshot_every and step % args.snapshot_every == 0:
                (out / "snapshots").mkdir(exist_ok=True)
                atomic_save(weights_blob(), out / "snapshots" / f"step-{step:07d}.pt")
            if step % args.log_every == 0 or val_psnr is not None:
                now = time.monotonic()
                its = (step - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, step
                writer.writerow([step, round(now - start, 2), *(round(float(running[k]), 6) for k in
                                 ("g", "int", "grad", "flow", "adv", "d", "compact", "separate")), lr_at(step, lr_g),
                                 "" if val_psnr is None else round(val_psnr, 4), round(its, 3)])
                metrics_file.flush()
                bar.set_postfix(g=f"{float(running['g']):.4f}", int=f"{float(running['int']):.4f}",
                                flow=f"{float(running['flow']):.3f}", d=f"{float(running['d']):.3f}",
                                val=f"{best_val:.2f}")
            if args.max_minutes is not None and time.monotonic() - start > args.max_minutes * 60:
                log.info("time box of %.1f min reached at step %d", args.max_minutes, step)
                break
    finally:
        bar.close()
        metrics_file.close()
    save(last_path)
    if val_set is None or not best_path.is_file():
        save(best_path)

    # ---- calibration on the held-out normal videos, stored in the checkpoint ---------------------------
    from .evaluate import calibrate_predictor

    chosen = best_path
    ckpt = safe_torch_load(chosen)
    predictor = predictor_from_blob(ckpt["weights"], device=str(device))
    if val_videos:
        calibration = calibrate_predictor(predictor, val_videos, source=f"{args.data} held-out {meta['holdout_videos']}")
        ckpt["weights"]["calibration"] = calibration.to_dict()
        atomic_save(ckpt, chosen)
    summary = {"steps": step, "best_val_psnr": best_val, "minutes": (time.monotonic() - start) / 60,
               "checkpoint": str(chosen)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("done: %s", summary)
    return chosen
