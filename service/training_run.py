"""A camera's training process: `python -m model.learn` on a footage folder, in a run folder of its own.

    data_dir/cameras/{id}/runs/run-NNNN/   learn.log, progress.json (polled), last.pt (resumed from), final.pt

When a run finishes, the camera's older runs are deleted but the KEEP_RUNS latest (`prune_runs`): its models are
in the registry.

The process is niced, runs `learning.threads` torch threads and has its own session and process group, so that
stopping it (SIGTERM, then SIGKILL) also stops whatever it started, and a signal meant for the service's group
(Ctrl-C) does not reach it: the service stops it itself. Used by a camera's learning and by its model refresh.
"""
from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import model as model_package

from .settings import LearningSettings

log = logging.getLogger(__name__)
KILL_GRACE_S = 5.0  # a training process asked to stop (SIGTERM) gets this long before SIGKILL
# Finished run folders kept per camera (their logs and weights, for a look at how a recent run went); the models
# themselves are in the registry, so older runs are only disk.
KEEP_RUNS = 3


def queue_starts(running_left_s: Sequence[float], waiting: Sequence[tuple[float, float]], slots: int) -> list[float]:
    """When each waiting training would start, in seconds from now. `running_left_s`: what the running trainings
    have left; `waiting`: (ready in s, budget in s) of each waiting one, in their turn order. Each takes the first
    of the `slots` to come free once it is ready; a running training beyond the slots frees none."""
    free = sorted(running_left_s)[-slots:] if running_left_s else []
    free += [0.0] * (slots - len(free))
    heapq.heapify(free)
    starts = []
    for ready, budget in waiting:
        start = max(heapq.heappop(free), ready)
        starts.append(start)
        heapq.heappush(free, start + budget)
    return starts


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def next_run(folder: Path) -> str:
    """The name of the camera's next run folder under folder/runs: run-0001, run-0002, ..."""
    runs = folder / "runs"
    used = [int(p.name[4:]) for p in runs.glob("run-*") if p.name[4:].isdigit()] if runs.is_dir() else []
    return f"run-{max(used, default=0) + 1:04d}"


def prune_runs(folder: Path, *, keep: int = KEEP_RUNS, spare: tuple[str, ...] = ()) -> list[str]:
    """Delete the camera's run folders under folder/runs but the `keep` latest and those in `spare` (a run that
    trains now). Called when a run has finished; returns the names deleted."""
    runs = folder / "runs"
    if not runs.is_dir():
        return []
    numbered = sorted((int(p.name[4:]), p) for p in runs.glob("run-*") if p.is_dir() and p.name[4:].isdigit())
    old = [p for _, p in numbered[:max(0, len(numbered) - keep)] if p.name not in spare]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    if old:
        log.info("deleted %d finished run folders in %s", len(old), runs)
    return [p.name for p in old]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a training process and everything it started (its own process group): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_stale(pid: int | None, run_dir: Path) -> None:
    """A training process left running by a service that died (SIGKILL, a crash): kill its group before the run
    is resumed, so that two processes never write one run folder. Only a process whose command line names this
    run folder is touched."""
    if pid is None:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if str(run_dir).encode() in cmdline:
        log.warning("killing training process %d left by the previous run", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def launch(settings: LearningSettings, footage: Path, run_dir: Path, train_minutes: float, *, device: str,
           init: str | None = None, baseline: bool = False) -> subprocess.Popen[bytes]:
    """Start `python -m model.learn` on `footage` in `run_dir` (resumed from its last.pt when there is one);
    `init`: the starting weights (default: the settings' `init`); `baseline`: measure them on the held-out tail
    too (a refresh compares the new model with the one it started from)."""
    s = settings
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "model.learn", "--footage", str(footage), "--out", str(run_dir),
           "--train-minutes", str(train_minutes), "--threads", str(s.threads), "--init", init or s.init,
           "--recipe", s.recipe, "--holdout", str(s.holdout), "--device", device]
    if baseline:
        cmd.append("--baseline")
    if s.nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(s.nice), *cmd]
    # The child imports this checkout's model package, whatever its working directory.
    src = str(Path(model_package.__file__).resolve().parent.parent)
    env = {**os.environ, "OMP_NUM_THREADS": str(s.threads), "MKL_NUM_THREADS": str(s.threads),
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    with open(run_dir / "learn.log", "ab") as logf:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def log_tail(run_dir: Path) -> str | None:
    """The last line of the run's log (what a failed process said last)."""
    try:
        lines = (run_dir / "learn.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1][-300:] if lines else None


@dataclass(frozen=True)
class Ended:
    """How a training process ended: its final weights, or why there are none."""

    final: Path | None
    error: str | None


def poll(proc: subprocess.Popen[bytes], run_dir: Path) -> tuple[dict[str, Any] | None, Ended | None]:
    """(the run's progress.json, how the process ended or None while it runs)."""
    progress = read_json(run_dir / "progress.json")
    rc = proc.poll()
    if rc is None:
        return progress, None
    final = run_dir / "final.pt"
    if rc == 0 and final.is_file():
        return progress, Ended(final, None)
    return progress, Ended(None, (progress or {}).get("error") or log_tail(run_dir) or f"exit status {rc}")
