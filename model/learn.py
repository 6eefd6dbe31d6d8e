"""Learn one camera's own model from its recorded footage, under a wall-clock budget.

`learn(footage_root, out_dir, train_minutes=...)` trains a recipe (model/recipes/camera-lite.yaml) with
`model.train.train` on the footage's windows (model.footage), the TAIL of the footage held out: validation
(prediction PSNR) and calibration (the same Calibration as `ffp calibrate`) run on it. OUT holds last.pt (resumed
from when present: a restarted service continues training), progress.json and, at the end, final.pt: an ffp
weights file that load_predictor, `ffp eval`, `ffp score` and the service accept.

`python -m model.learn --footage ROOT --out DIR --train-minutes T --threads N [--init ...]` is the same as a
process of its own (the service runs it niced): exit 0 when final.pt is written, 2 on a clear error (also
written to progress.json's "error").

`ffp learn SOURCE` records the footage first (model.record), then learns.
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checkpoint import DEFAULT_WEIGHTS_NAME, WEIGHTS_DIR, WeightsError, atomic_save, safe_torch_load, weights_of
from .config import ModelConfig, TrainConfig
from .data import UINT8_TO_FLOAT, DataError, VideoSource
from .footage import MIN_HOLDOUT_WINDOWS, Footage, Piece, as_model_layout, motion_check, write_json_atomic
from .recipes import load_recipe, recipe_model

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "camera-lite"
HOLDOUT_FRACTION = 0.15  # the tail of the footage held out for validation and calibration
PROGRESS_EVERY_S = 2.0  # progress.json is rewritten at most this often while training
WARMUP_STEPS = 3  # the first steps (allocations, oneDNN's kernel choice) are not timed for the forecast

Report = Callable[[dict[str, Any]], None]


class ProgressFile:
    """OUT/progress.json, written atomically, and the same dict handed to an optional callback."""

    def __init__(self, path: Path, train_minutes: float, callback: Report | None) -> None:
        self.path, self.callback = path, callback
        self.state: dict[str, Any] = {"state": "training", "step": 0, "steps_planned": None, "minutes": 0.0,
                                      "train_minutes": train_minutes, "heldout_psnr": None, "eta_s": None,
                                      "error": None}
        self.written = -float("inf")

    def update(self, force: bool = False, **values: Any) -> None:
        self.state.update(values)
        now = time.monotonic()
        if force or now - self.written >= PROGRESS_EVERY_S:
            self.written = now
            write_json_atomic(self.path, self.state)
            if self.callback is not None:
                self.callback(dict(self.state))


class Budget:
    """The loop's control (model.train.LoopControl) for a wall-clock budget of `train_minutes`, counted over
    every process of the run (a resumed run goes on from the minutes its checkpoint recorded) and, in each, from
    the end of its first step: reading the footage and building the models come before, the final validation
    and calibration after it. The run stops at the first step that ends at or after the budget.

    The cosine schedule follows the fraction of the budget spent (`done`), not a planned step count. A count
    fixed from the first steps' rate ends the run early when those steps were slow (the host busy at the
    start) and leaves the cosine short of 0 when they were fast; re-planning a count as the rate changes
    makes the LR jump unless the fraction reached is carried over, which is this clock again. On the
    budget's clock the schedule ends at 0 when the run ends, whatever the step rate, is continuous (a step
    moves it by at most pi/2 * its share of the budget) and survives restarts with the minutes recorded.
    `steps_planned` is only a forecast for progress reports: the steps so far plus the remaining budget at
    the recent step rate (with a validation's share every `val_every` steps)."""

    RATE_STEPS = 50  # the recent plain steps whose median rate forecasts the rest

    def __init__(self, train_minutes: float, val_every: int, progress: ProgressFile, minutes_done: float = 0.0,
                 steps_planned: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(train_minutes) and train_minutes > 0):
            raise ValueError(f"train_minutes must be a positive number, got {train_minutes}")
        self.train_minutes, self.val_every, self.progress = train_minutes, val_every, progress
        self.minutes_done, self.steps_planned = minutes_done, steps_planned
        self.clock = clock
        self.start: float | None = None
        self.last_t: float | None = None
        self.validated_step: int | None = None
        self.timed_steps = 0  # plain steps seen, the warm-up ones included
        self.step_s: deque[float] = deque(maxlen=self.RATE_STEPS)  # the recent plain steps, after warm-up
        self.val_s: float | None = None  # the latest step followed by a validation and checkpoint

    @property
    def steps(self) -> int | None:
        return self.steps_planned

    def minutes(self) -> float:
        return self.minutes_done + (0.0 if self.start is None else (self.clock() - self.start) / 60)

    def done(self) -> float:
        return min(1.0, self.minutes() / self.train_minutes)

    def after_step(self, step: int, meta: dict[str, Any]) -> bool:
        now = self.clock()
        if self.start is None:
            self.start = now
        if self.last_t is not None:
            if self.validated_step == step - 1:
                self.val_s = now - self.last_t
            else:
                self.timed_steps += 1
                if self.timed_steps > WARMUP_STEPS:
                    self.step_s.append(now - self.last_t)
        self.last_t, self.validated_step = now, None
        minutes = self.minutes()
        remaining_s = max(0.0, (self.train_minutes - minutes) * 60)
        step_s = statistics.median(self.step_s) if self.step_s else None
        if step_s is not None:
            val_s = max(0.0, self.val_s - step_s) if self.val_s is not None else 0.0
            self.steps_planned = step + math.ceil(remaining_s / (step_s + val_s / self.val_every))
        meta.update(steps_planned=self.steps_planned, minutes=round(minutes, 4), train_minutes=self.train_minutes)
        self.progress.update(step=step, steps_planned=self.steps_planned, minutes=round(minutes, 3),
                             eta_s=round(remaining_s, 1))
        return minutes >= self.train_minutes

    def validated(self, step: int, psnr: float) -> None:
        self.validated_step = step
        self.progress.update(force=True, heldout_psnr=rounded(finite_psnr(psnr)))


def finite_psnr(psnr: float | None) -> float | None:
    """A PSNR as progress.json and the weights' meta keep it: None when it is not a number (a diverged run's NaN:
    JSON has none, and a reader must not take it for a measurement)."""
    return None if psnr is None or not math.isfinite(psnr) else float(psnr)


def rounded(psnr: float | None) -> float | None:
    return None if psnr is None else round(psnr, 3)


def resolve_init(init: str | Path) -> Path | None:
    """`none` (from scratch), `shipped` (the shipped Ped2 lite weights) or a weights / checkpoint file."""
    if str(init) == "none":
        return None
    if str(init) == "shipped":
        return WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME
    path = Path(init)
    if not path.is_file():
        raise DataError(f"--init: weights file not found: {path} (or give none or shipped)")
    return path


def check_init(init: str | Path, recipe: str = DEFAULT_RECIPE) -> None:
    """What a run of `recipe` would start from (`init`), checked before footage is recorded for it."""
    from .discriminator import PatchDiscriminator
    from .train_state import read_init
    from .unet import Generator

    path = resolve_init(init)
    if path is not None:
        config = recipe_model(recipe)
        read_init(path, Generator(config), PatchDiscriminator(config.channels, config.disc_widths))


def footage_data(footage: Footage, cfg: TrainConfig, config: ModelConfig, holdout_fraction: float,
                 min_holdout_windows: int, pieces: list[Piece] | None = None) -> Any:
    """The run's Data (model.train): training windows over the footage's uint8 frames, its tail held out."""
    from .train import build_data

    train_p, holdout_p = footage.split(holdout_fraction, config.history, min_holdout_windows, pieces)
    h, w = config.image_size
    for p in (*train_p, *holdout_p):
        shape = p.frames.shape[1:]
        if shape[:2] != (h, w) or (shape[2] if len(shape) == 3 else 1) != config.channels:
            raise DataError(f"footage {p.segment} holds {shape} frames; the recipe's model takes "
                            f"{config.channels} channels at {h}x{w}: record it again for this model")
    table = UINT8_TO_FLOAT.numpy()
    return build_data(cfg, config, [VideoSource(p.name, p.segment) for p in train_p],
                      [VideoSource(p.name, p.segment) for p in holdout_p],
                      [as_model_layout(p.frames) for p in train_p],
                      [table[as_model_layout(p.frames)] for p in holdout_p])


def learn(footage_root: str | Path, out_dir: str | Path, *, train_minutes: float, threads: int = 1,
          init: str | Path = "none", recipe: str = DEFAULT_RECIPE, progress: Report | None = None,
          holdout_fraction: float = HOLDOUT_FRACTION, min_holdout_windows: int = MIN_HOLDOUT_WINDOWS,
          device: str = "auto", baseline: bool = False) -> Path:
    """Train the recipe on the footage within `train_minutes` of training (wall clock; the final validation
    and calibration come after it), resuming from out_dir/last.pt; returns out_dir/final.pt. `baseline`: also
    measure the starting weights (`init`) on the same held-out tail, as `init_heldout_psnr` in the weights'
    meta and progress.json, so that a fine-tuned model can be compared with the one it started from."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ProgressFile(out / "progress.json", train_minutes, progress)
    try:
        return _learn(Path(footage_root), out, train_minutes, threads, init, recipe, report, holdout_fraction,
                      min_holdout_windows, device, baseline)
    except Exception as e:
        report.update(force=True, state="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise


def _learn(root: Path, out: Path, train_minutes: float, threads: int, init: str | Path, recipe: str,
           report: ProgressFile, holdout_fraction: float, min_holdout_windows: int, device: str,
           baseline: bool) -> Path:
    from .train import plan, train

    minutes_done, steps_planned, step = 0.0, None, 0
    last = out / "last.pt"
    if last.is_file():  # a restarted run: its plan and the minutes it has spent come with its checkpoint
        saved = safe_torch_load(last)  # train() checks the rest of it when it resumes
        meta = weights_of(saved).get("meta", {})
        minutes_done, steps_planned, step = float(meta.get("minutes", 0.0)), meta.get("steps_planned"), saved["step"]
    report.update(force=True, step=step, steps_planned=steps_planned, minutes=round(minutes_done, 3))
    if threads < 1:
        raise DataError(f"threads must be at least 1, got {threads}")
    footage = Footage(root)
    pieces = footage.pieces()  # read once: checked here, then cut into windows
    if not pieces:
        raise DataError(f"no footage recorded in {root}")
    reason = motion_check([p.frames for p in pieces])
    if reason is not None:
        raise DataError(f"footage refused: {reason}")
    cfg = TrainConfig(**{**load_recipe(recipe), "data": root, "out": out, "threads": threads,
                         "init": resolve_init(init), "device": device, "progress": False, "max_minutes": None})
    config = plan(cfg).model
    data = footage_data(footage, cfg, config, holdout_fraction, min_holdout_windows, pieces)
    del pieces
    budget = Budget(train_minutes, cfg.val_every, report, minutes_done, steps_planned)
    shipped = train(cfg, data, budget)

    ckpt = safe_torch_load(shipped)
    blob = weights_of(ckpt)
    calibration = blob["calibration"]
    if calibration is None:
        raise WeightsError(f"{shipped} has no calibration: the held-out tail gave none")
    init_psnr = finite_psnr(_init_heldout_psnr(cfg, data)) if baseline else None
    heldout_psnr = finite_psnr(calibration["mean"]["psnr"])
    blob["meta"] = {**blob["meta"], "recipe": recipe, "steps": int(ckpt["step"]), "train_minutes": train_minutes,
                    "heldout_psnr": heldout_psnr, "init_heldout_psnr": init_psnr,
                    "footage": {"root": str(root), "frames": footage.frames, "span_s": round(footage.span_s, 3),
                                "fps": footage.fps, "segments": len(footage.segment_dirs()),
                                "train_windows": len(data.train), "holdout_windows": len(data.val or [])}}
    final = out / "final.pt"
    atomic_save(blob, final)
    report.update(force=True, state="done", step=int(ckpt["step"]), minutes=blob["meta"].get("minutes"), eta_s=0.0,
                  heldout_psnr=rounded(heldout_psnr), init_heldout_psnr=rounded(init_psnr))
    return final


def _init_heldout_psnr(cfg: TrainConfig, data: Any) -> float:
    """Prediction PSNR of the starting weights on the held-out tail, measured as the trained model's
    `heldout_psnr` is (the calibration's mean over every held-out window)."""
    from .evaluate import calibrate_predictor
    from .predictor import load_predictor, pick_device

    if cfg.init is None:
        raise DataError("a baseline needs starting weights (--init)")
    precision = None if cfg.calibration_precision == "auto" else cfg.calibration_precision
    predictor = load_predictor(cfg.init, device=str(pick_device(cfg.device)[0]), precision=precision)
    calibration = calibrate_predictor(predictor, data.val_videos, source="the starting weights on the holdout")
    return float(calibration.mean["psnr"])


# ---- python -m model.learn ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .cli_args import at_least_one, positive

    p = argparse.ArgumentParser(prog="python -m model.learn", description="Learn a camera's model from its footage "
                                "(resumes from DIR/last.pt; writes DIR/progress.json and DIR/final.pt).")
    p.add_argument("--footage", required=True, type=Path, help="the camera's footage folder (model.footage)")
    p.add_argument("--out", required=True, type=Path, help="run folder: last.pt, progress.json, final.pt")
    p.add_argument("--train-minutes", required=True, type=positive, help="training budget, wall clock")
    p.add_argument("--threads", type=at_least_one, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--init", default="none", help="none (from scratch), shipped (the Ped2 lite weights) or a file")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help="a packaged recipe or a YAML file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--baseline", action="store_true", help="also measure the --init weights on the held-out tail "
                   "(init_heldout_psnr), to compare the new model with the one it started from")
    p.add_argument("--holdout", type=float, default=HOLDOUT_FRACTION,
                   help=f"tail of the footage held out for validation and calibration (default {HOLDOUT_FRACTION})")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import torch

        torch.set_num_threads(a.threads)
        print(learn(a.footage, a.out, train_minutes=a.train_minutes, threads=a.threads, init=a.init,
                    recipe=a.recipe, device=a.device, holdout_fraction=a.holdout, baseline=a.baseline))
    except (DataError, WeightsError, ValueError) as e:
        print(f"model.learn: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
