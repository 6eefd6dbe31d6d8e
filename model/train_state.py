"""A training run's state and what its checkpoints keep: the models and optimisers it trains (`Models`), its
progress, the RNG state, and how a run resumes from its own last.pt or starts from other weights (--init).

A checkpoint holds everything needed to go on bit for bit: weights, optimisers, step, best validation PSNR and
the RNG state (as plain tensors and numbers, so that it loads with torch.load(weights_only=True)).
"""
from __future__ import annotations

import copy
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

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
from .config import ModelConfig, ScoreConfig, TrainConfig
from .data import DataError
from .discriminator import PatchDiscriminator
from .flownet import FlowNet
from .scoring import Calibration
from .unet import Generator

log = logging.getLogger(__name__)


@dataclass
class Models:
    generator: Generator  # the raw weights, which train
    discriminator: PatchDiscriminator
    flownet: FlowNet | None  # frozen, but differentiable: the flow loss's gradient reaches G through it
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: Generator | None = None  # the running average of G's weights (`ema`), set up after resuming

    @property
    def shipped(self) -> Generator:
        """The generator that validation measures, checkpoints keep and `ffp export` ships."""
        return self.ema if self.ema is not None else self.generator


def _rng_state() -> dict[str, Any]:
    # Plain tensors and numbers only, so that checkpoints load with torch.load(weights_only=True).
    # numpy's legacy state: (name, keys, pos, has_gauss, cached_gaussian)
    name, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
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


def read_init(path: Path, generator: torch.nn.Module,
              discriminator: torch.nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """--init's file, checked against the modules it is to start (the discriminator only when the file is a
    training checkpoint): (the file as loaded, its weights blob). A shipped file listed in weights/manifest.json
    must match its sha256; the image size may differ (every layer is convolutional, so fine-tuning at a new size
    starts from them)."""
    if not path.is_file():
        raise DataError(f"--init: weights file not found: {path}")
    verify_checksum(path)
    ckpt = safe_torch_load(path)
    blob = weights_of(ckpt)
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"--init: {path} is not an ffp weights file or checkpoint")
    parts = [("generator", generator, blob["generator"])]
    if ckpt is not blob:  # a training checkpoint: its discriminator starts the run's too
        parts.append(("discriminator", discriminator, ckpt.get("discriminator") or {}))
    for name, module, theirs in parts:
        ours = module.state_dict()
        differ = sorted({k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape}
                        | (theirs.keys() - ours.keys()))
        if differ:
            raise WeightsError(f"--init: {path} does not fit this architecture (only image_size may differ): "
                               f"{len(differ)} of the {name}'s tensors differ, {differ[0]} first")
    return ckpt, blob


def _init_weights(path: Path, models: Models) -> dict[str, Any]:
    """Load a generator (and, from a training checkpoint, its discriminator) of the same architecture.
    Returns the record of the start kept in the run's meta: file, sha256 and the source run's step."""
    ckpt, blob = read_init(path, models.generator, models.discriminator)
    models.generator.load_state_dict(blob["generator"])
    if ckpt is not blob:
        models.discriminator.load_state_dict(ckpt["discriminator"])
    return {"file": str(path), "sha256": sha256_file(path), "step": blob.get("meta", {}).get("step")}


# ---- resume: from the run's own last.pt, or a new run from other weights (--init) ----------------------

@dataclass
class Progress:
    step: int = 0
    best_val: float = -float("inf")
    init: dict[str, Any] | None = None  # which weights the run started from, kept across resumes


def resume(cfg: TrainConfig, config: ModelConfig, models: Models, last_path: Path) -> Progress:
    """Restore a run from its last.pt (weights, optimisers, step, RNG), or start one from --init; then set up
    the EMA generator, which goes on from the saved average when resuming."""
    progress = Progress()
    resumed: dict[str, Any] | None = None
    if cfg.resume and last_path.is_file():
        ckpt = resumed = load_checkpoint(last_path, config)
        # an EMA run keeps the raw (trained) weights apart from the averaged ones it ships
        models.generator.load_state_dict(ckpt.get("generator_train", ckpt["weights"]["generator"]))
        models.discriminator.load_state_dict(ckpt["discriminator"])
        models.opt_g.load_state_dict(ckpt["opt_g"])
        models.opt_d.load_state_dict(ckpt["opt_d"])
        progress.step, progress.best_val = ckpt["step"], ckpt["best_val_psnr"]
        _set_rng_state(ckpt["rng"])
        progress.init = ckpt["weights"].get("meta", {}).get("init")
        log.info("resumed from %s at step %d", last_path, progress.step)
    elif cfg.init is not None:
        progress.init = _init_weights(Path(cfg.init), models)
        log.info("initialised from %s (step %s of its run)", cfg.init, progress.init["step"])
    if cfg.ema is not None:
        models.ema = copy.deepcopy(models.generator).requires_grad_(False)
        if resumed is not None:
            models.ema.load_state_dict(resumed["weights"]["generator"])
    return progress


# ---- save: checkpoints (last.pt, best.pt) -------------------------------------------------------------

def dense(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in the default memory layout: training on a CPU keeps the generator channels_last, and a
    weights file should not depend on where it was trained."""
    return {name: t.contiguous() for name, t in state.items()}


def weights_blob(config: ModelConfig, models: Models, meta: dict[str, Any], step: int,
                 calibration: Calibration | None = None) -> dict[str, Any]:
    flownet = models.flownet
    return {"format": WEIGHTS_FORMAT, "model_config": config.to_dict(), "generator": dense(models.shipped.state_dict()),
            "flownet_config": None if flownet is None else flownet.config.to_dict(),
            "flownet": None if flownet is None else flownet.state_dict(),
            "calibration": None if calibration is None else calibration.to_dict(),
            "score_config": asdict(ScoreConfig()), "meta": {**meta, "step": step}}


def save_checkpoint(path: Path, cfg: TrainConfig, config: ModelConfig, models: Models, progress: Progress,
                    meta: dict[str, Any]) -> None:
    ckpt = {"format": CHECKPOINT_FORMAT, "step": progress.step, "best_val_psnr": progress.best_val,
            "weights": weights_blob(config, models, meta, progress.step), "discriminator":
            models.discriminator.state_dict(), "opt_g": models.opt_g.state_dict(), "opt_d": models.opt_d.state_dict(),
            "rng": _rng_state(), "args": {k: str(v) for k, v in asdict(cfg).items()}}
    if models.ema is not None:
        ckpt["generator_train"] = dense(models.generator.state_dict())
    atomic_save(ckpt, path)
