"""learn(): a recipe trained on recorded footage under a wall-clock budget, its tail held out; resuming after a
kill; `python -m model.learn` and `ffp learn` with their exit statuses."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model.checkpoint import safe_torch_load
from model.config import get_preset
from model.footage import Footage, FootageWriter
from model.learn import WARMUP_STEPS, learn
from model.predictor import load_predictor
from tests.model.synthetic import scene_frames, write_video

ROOT = Path(__file__).resolve().parents[2]
CONFIG = get_preset("lite", num_frames=4, image_size=(32, 32))
# camera-lite's training at a test's size: 32x32 frames, k = 4, a checkpoint every 2 steps
TINY_RECIPE = """\
preset: lite
arch: {num_frames: 4, image_size: [32, 32]}
dataset: default
batch_size: 2
crop: 16
lr_g: 2.0e-4
lr_schedule: cosine
ema: 0.9
w_int: 1.0
w_grad: 0.0
w_flow: 0.0
w_adv: 0.0
val_every: 2
precision: fp32
ship: last
calibration_precision: fp32
"""


def record_scene(root: Path, segments: int = 2, length: int = 60, frames: list[np.ndarray] | None = None) -> Path:
    writer = FootageWriter(root, CONFIG, fps=10, max_frames=10_000, max_bytes=1 << 30)
    for s in range(segments):
        for i, f in enumerate(frames or scene_frames(length, size=64, offset=13 * s)):
            writer.append(f, 100 * s + i / 10)
        writer.new_segment("outage")
    writer.close()
    return root


def tiny_recipe(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return str(path)


def test_learn_trains_for_its_budget_and_writes_calibrated_weights(tmp_path: Path) -> None:
    footage = record_scene(tmp_path / "footage")
    reports: list[dict[str, Any]] = []
    final = learn(footage, tmp_path / "run", train_minutes=0.05, threads=1, recipe=tiny_recipe(tmp_path),
                  progress=reports.append, min_holdout_windows=10)
    assert final == tmp_path / "run" / "final.pt"
    predictor = load_predictor(final, device="cpu", precision="fp32")
    assert predictor.config == CONFIG and predictor.calibration is not None
    meta = predictor.meta
    # The run ends at the first step at or after the budget. There no budget remains, so a forecast is the steps
    # taken; there is none yet when the budget ran out before more than WARMUP_STEPS plain steps were timed (a
    # slow host). With a validation every 2 steps every other step is a plain one, so after 2 * (WARMUP_STEPS + 1)
    # steps there is one.
    assert meta["minutes"] >= 0.05 and meta["steps_planned"] in (None, meta["steps"])
    if meta["steps"] >= 2 * (WARMUP_STEPS + 1):
        assert meta["steps_planned"] == meta["steps"]
    assert meta["footage"]["frames"] == 120 and meta["footage"]["segments"] == 2
    assert meta["holdout_videos"] == ["seg-00002[42:]"]  # the tail: 18 frames, 14 windows
    assert meta["train_videos"] == ["seg-00001", "seg-00002[:42]"]
    assert np.isfinite(meta["heldout_psnr"]) and meta["heldout_psnr"] == predictor.calibration.mean["psnr"]
    assert meta["recipe"].endswith("tiny.yaml") and meta["lr_schedule"] == "cosine"
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["state"] == "done" and progress["error"] is None and progress["step"] == meta["steps"]
    assert progress["eta_s"] == 0.0 and progress["heldout_psnr"] is not None
    assert reports[0]["state"] == "training" and reports[-1] == progress
    assert all(r["steps_planned"] is None or r["steps_planned"] >= r["step"] for r in reports)
    # the calibration is ffp calibrate's: score statistics of the final weights on the held-out tail
    from model.data import UINT8_TO_FLOAT
    from model.evaluate import calibrate_predictor
    from model.footage import as_model_layout

    tail = Footage(footage).segments()[1][42:]
    again = calibrate_predictor(predictor, [UINT8_TO_FLOAT.numpy()[as_model_layout(tail)]], source="x")
    assert again.mean == predictor.calibration.mean and again.frames == 14


def test_a_killed_run_resumes_from_its_checkpoint_and_its_minutes(tmp_path: Path) -> None:
    footage = record_scene(tmp_path / "footage")
    run = tmp_path / "run"
    recipe = tiny_recipe(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "model.learn", "--footage", str(footage), "--out", str(run),
                             "--train-minutes", "5", "--threads", "1", "--recipe", recipe], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        progress: dict[str, Any] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if (run / "progress.json").is_file():
                progress = json.loads((run / "progress.json").read_text())
                if progress["steps_planned"] is not None and progress["step"] >= 12:
                    break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert progress.get("state") == "training" and progress["step"] >= 12, progress
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = safe_torch_load(run / "last.pt")
    step, planned = saved["step"], saved["weights"]["meta"]["steps_planned"]
    assert step >= 10 and planned is not None and planned > step + 100
    # the budget counts every process's minutes: given one already spent, the run takes one more step,
    # validates, calibrates and ships
    reports: list[dict[str, Any]] = []
    final = learn(footage, run, train_minutes=1e-4, threads=1, recipe=recipe, progress=reports.append,
                  min_holdout_windows=10)
    meta = safe_torch_load(final)["meta"]
    assert meta["steps"] == step + 1 and meta["steps_planned"] == planned
    assert meta["minutes"] >= saved["weights"]["meta"]["minutes"]
    assert [r["step"] for r in reports if r["state"] == "training"][:2] == [step, step + 1]  # not 0


def test_learn_entry_point_refuses_frozen_footage_with_a_clear_error(tmp_path: Path) -> None:
    still = scene_frames(1, size=64)[0]
    footage = record_scene(tmp_path / "footage", segments=1, frames=[still] * 80)
    r = subprocess.run([sys.executable, "-m", "model.learn", "--footage", str(footage), "--out", str(tmp_path / "run"),
                        "--train-minutes", "1", "--threads", "1"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 2 and "frozen" in r.stderr and "Traceback" not in r.stderr, r.stderr
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["state"] == "failed" and "frozen" in progress["error"]
    assert not (tmp_path / "run" / "final.pt").exists()


def ffp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_ffp_learn_records_a_folder_of_videos_and_writes_weights_that_score(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", scene_frames(80, size=64), fps=20)  # decimated to 10 fps: 40 frames
    write_video(videos / "b.mp4", scene_frames(50, size=64, offset=9), fps=10)
    out = tmp_path / "camera.pt"
    work = tmp_path / "work"
    r = ffp("learn", str(videos), "--footage-minutes", "1", "--train-minutes", "0.05", "--out", str(out),
            "--threads", "1", "--work", str(work))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["weights"] == str(out) and summary["footage"]["frames"] == 90
    assert summary["footage"]["segments"] == 2 and summary["footage"]["fps"] == 10.0
    assert [len(s) for s in Footage(work / "footage").segments()] == [40, 50]
    predictor = load_predictor(out, device="cpu")
    assert predictor.config.name == "lite" and predictor.config.num_frames == 8 and predictor.calibration is not None
    assert predictor.meta["recipe"] == "camera-lite" and predictor.meta["crop"] == 64
    scores = tmp_path / "scores.json"
    r = ffp("score", str(videos / "b.mp4"), "--weights", str(out), "--threads", "1", "--out", str(scores))
    assert r.returncode == 0, r.stderr
    rows = json.loads(scores.read_text())["frames"]
    assert len(rows) == 50 and all(np.isfinite(row["score"]) for row in rows[8:])
    with torch.no_grad():
        assert predictor.generator(torch.zeros(1, 8, 128, 128)).shape == (1, 1, 128, 128)


def test_ffp_learn_bad_source_or_frozen_footage_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "camera.pt"
    base = ["--footage-minutes", "1", "--train-minutes", "0.05", "--out", str(out), "--threads", "1"]
    r = ffp("learn", str(tmp_path / "missing.mp4"), *base)
    assert r.returncode == 2 and "source not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    frozen = write_video(tmp_path / "frozen.mp4", [scene_frames(1, size=64)[0]] * 60)
    r = ffp("learn", str(frozen), *base)
    assert r.returncode == 2 and "frozen" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    black = write_video(tmp_path / "black.mp4", [np.zeros((64, 64), np.uint8)] * 60)
    r = ffp("learn", str(black), *base)
    assert r.returncode == 2 and "uniform" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_the_camera_recipe_is_the_shipped_lite_training_budgeted_by_minutes() -> None:
    from model.config import TrainConfig
    from model.recipes import load_recipe, recipe_model
    from model.train import plan

    camera, shipped = load_recipe("camera-lite"), load_recipe("ped2-lite")
    for key in ("preset", "batch_size", "crop", "lr_g", "lr_schedule", "ema", "w_grad", "w_flow", "w_adv",
                "precision", "ship", "calibration_precision"):
        assert camera[key] == shipped[key], key
    assert "steps" not in camera and "max_minutes" not in camera  # the budget plans the schedule
    runs = [plan(TrainConfig(data=Path("footage"), out=Path("run"), **r)) for r in (camera, shipped)]
    assert runs[0].model == runs[1].model == recipe_model("camera-lite") and runs[0].model.num_frames == 8
    assert runs[0].loss_weights == runs[1].loss_weights and runs[0].lr_g == runs[1].lr_g == 2e-4


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def budgeted_run(budget: Any, clock: FakeClock, step_s: Callable[[int], float], val_s: float = 2.0,
                 val_every: int = 20, step: int = 0, max_steps: int = 100_000) -> tuple[int, list[float]]:
    """model.train's loop as Budget sees it, with step (and validation) durations given: (last step, LRs)."""
    from model.config import TrainConfig
    from model.train import lr_at

    cfg = TrainConfig(data=Path("footage"), out=Path("run"), lr_schedule="cosine")
    lrs = []
    while step < max_steps:
        lrs.append(lr_at(cfg, step, 1.0, budget.done()))
        clock.t += step_s(step)
        step += 1
        stop = budget.after_step(step, {})
        if step % val_every == 0 or stop:
            clock.t += val_s
            budget.validated(step, 30.0)
        if stop:
            return step, lrs
    raise AssertionError("the budget never stopped the run")


def test_budget_uses_its_minutes_when_the_first_steps_are_slow(tmp_path: Path) -> None:
    """Steps 4x slower for the first 2 minutes (the host busy recording), then fast: the run uses its whole
    budget whatever the first steps' rate, stops at the first step past it, and its LR follows one continuous
    cosine from 1 down to 0."""
    from model.learn import Budget, ProgressFile

    clock = FakeClock()
    progress = ProgressFile(tmp_path / "progress.json", 15.0, None)
    budget = Budget(15.0, 20, progress, clock=clock)
    last, lrs = budgeted_run(budget, clock, lambda s: 0.4 if clock.t < 1000.0 + 120 else 0.1)
    minutes = budget.minutes()
    assert 15.0 <= minutes < 15.0 + (0.1 + 2.0) / 60  # at or after the budget, by less than a step
    assert budget.done() == 1.0 and lrs[0] == 1.0 and lrs[-1] < 1e-4
    assert max(abs(a - b) for a, b in itertools.pairwise(lrs)) < 0.01
    assert all(b <= a for a, b in itertools.pairwise(lrs))
    # the forecast followed the rate: at the end it is the step the run stopped at
    assert budget.steps == last and progress.state["eta_s"] == 0.0


def test_budget_resumes_from_the_minutes_its_checkpoint_recorded(tmp_path: Path) -> None:
    """A restart mid-run: the new process goes on from the recorded minutes (its LR where the cosine was) and
    stops when the minutes of both processes reach the budget."""
    from model.learn import Budget, ProgressFile

    clock = FakeClock()
    progress = ProgressFile(tmp_path / "progress.json", 10.0, None)
    first = Budget(10.0, 20, progress, clock=clock)
    meta: dict[str, Any] = {}
    for step in range(1, 1201):  # 4 min of 0.2 s steps
        clock.t += 0.2
        first.after_step(step, meta)
    assert meta["minutes"] == pytest.approx(4.0, abs=0.01)
    resumed = Budget(10.0, 20, progress, minutes_done=meta["minutes"], steps_planned=meta["steps_planned"],
                     clock=clock)
    assert resumed.done() == pytest.approx(first.done(), abs=1e-3)  # the LR carries on where it was
    clock.t += 30.0  # the restart itself: loading footage and models is not training
    last, lrs = budgeted_run(resumed, clock, lambda s: 0.1, step=1200)
    assert 10.0 <= resumed.minutes() < 10.0 + 2.1 / 60 and last > 1200 + 1700  # 6 min at 5 steps a second
    assert lrs[0] == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.4)), abs=1e-3) and lrs[-1] < 1e-4


def test_a_psnr_that_is_not_a_number_is_written_as_null(tmp_path: Path) -> None:
    """A diverged run validates at NaN: progress.json says null (JSON has no NaN, and the service's API refuses
    to send one), a later finite measurement is written as measured."""
    from model.learn import Budget, ProgressFile, finite_psnr

    progress = ProgressFile(tmp_path / "progress.json", 1.0, None)
    budget = Budget(1.0, 20, progress)
    budget.validated(20, float("nan"))
    text = (tmp_path / "progress.json").read_text()
    assert "NaN" not in text and json.loads(text)["heldout_psnr"] is None
    budget.validated(40, 28.12345)
    assert json.loads((tmp_path / "progress.json").read_text())["heldout_psnr"] == 28.123
    assert finite_psnr(float("inf")) is None and finite_psnr(None) is None and finite_psnr(30.5) == 30.5
