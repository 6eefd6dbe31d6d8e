"""One camera's learning job: what it was asked for, where it stands (its phase), and its running parts; its state
on disk (`saved`, `from_saved`) and as GET /v1/cameras/{id} shows it (`view`); the jobs' turn for the training
slots (`in_turn`, `schedule`). service.learning drives it."""
from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import training_run
from .learning_view import learning_view
from .recording import FootageRecording

Phase = Literal["recording", "queued", "training", "done", "failed", "cancelled"]
BUSY: tuple[Phase, ...] = ("recording", "queued", "training")  # a job owns the camera: no relearn, no refresh
IN_LINE: tuple[Phase, ...] = ("queued", "training")  # waits for or holds a training slot: mode `training`


@dataclass
class Job:
    """One camera's learning: what it was asked for, where it stands, and its running parts."""

    camera_id: str
    folder: Path
    footage_minutes: float
    train_minutes: float
    frames_wanted: int
    fps: float
    run: str
    phase: Phase = "recording"
    error: str | None = None
    stopped: str | None = None  # why recording ended before frames_wanted (the disk cap)
    pid: int | None = None
    frames_recorded: int = 0
    segments: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    queued_at: float = 0.0  # when its footage was complete: its turn for a training slot
    retry_at: float = 0.0  # its training could not start: not tried again before then (a restart tries at once)
    launch_tries: int = 0  # trainings that could not start (a restart counts again from 0)
    recording: FootageRecording | None = None
    proc: subprocess.Popen[bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def footage(self) -> Path:
        return self.folder / "footage"

    @property
    def run_dir(self) -> Path:
        return self.folder / "runs" / self.run

    def saved(self) -> dict[str, Any]:
        return {"phase": self.phase, "footage_minutes": self.footage_minutes, "train_minutes": self.train_minutes,
                "frames_wanted": self.frames_wanted, "fps": self.fps, "run": self.run, "error": self.error,
                "stopped": self.stopped, "pid": self.pid, "frames_recorded": self.frames_recorded,
                "segments": self.segments, "queued_at": self.queued_at}

    @classmethod
    def from_saved(cls, camera_id: str, folder: Path, saved: dict[str, Any]) -> Job:
        """The job `saved()` wrote (KeyError, TypeError, ValueError: it cannot be read)."""
        return cls(camera_id, folder, float(saved["footage_minutes"]), float(saved["train_minutes"]),
                   int(saved["frames_wanted"]), float(saved["fps"]), str(saved["run"]), saved["phase"],
                   saved.get("error"), saved.get("stopped"), saved.get("pid"), int(saved.get("frames_recorded", 0)),
                   int(saved.get("segments", 0)), queued_at=float(saved.get("queued_at", 0.0)))

    @property
    def recorded(self) -> int:
        return self.recording.frames if self.recording is not None else self.frames_recorded

    def recording_left_s(self) -> float:
        return max(0, self.frames_wanted - self.recorded) / self.fps

    def budget_left_s(self) -> float:
        """Training seconds it has left: the budget less the minutes a resumed run spent already."""
        return max(0.0, 60 * (self.train_minutes - float(self.progress.get("minutes") or 0.0)))

    def view(self, eta_s: float | None = None, queue_position: int | None = None) -> dict[str, Any]:
        """What GET /v1/cameras/{id} shows as `learning`; `eta_s` and `queue_position` (recording, queued) come
        from the queue of training slots (Learning.view)."""
        eta = self.progress.get("eta_s") if self.phase == "training" else eta_s
        return learning_view(self.phase, frames_recorded=self.recorded, frames_wanted=self.frames_wanted,
                             segments=self.segments, footage_minutes=self.footage_minutes, progress=self.progress,
                             train_minutes=self.train_minutes, eta_s=eta, error=self.error, stopped=self.stopped,
                             queue_position=queue_position)


def in_turn(jobs: list[Job]) -> list[Job]:
    """The jobs waiting for a training slot, in their turn: the order their footage was complete."""
    return sorted((j for j in jobs if j.phase == "queued"), key=lambda j: j.queued_at)


def schedule(jobs: list[Job], refreshes_left_s: list[float], slots: int, now: float
             ) -> dict[str, tuple[float, int | None]]:
    """Each recording or queued job's ETA (seconds until armed) and place in the queue (queued ones): the running
    trainings' time left (the jobs' and the refreshes'), then the waiting ones in turn, each in the first slot to
    come free, a queued one not before its retry."""
    running = [float(j.progress.get("eta_s") or j.budget_left_s()) for j in jobs if j.proc is not None]
    waiting = in_turn(jobs) + sorted((j for j in jobs if j.phase == "recording"), key=Job.recording_left_s)
    starts = training_run.queue_starts(
        running + refreshes_left_s,
        [(max(0.0, j.retry_at - now) if j.phase == "queued" else j.recording_left_s(), j.budget_left_s())
         for j in waiting], slots)
    return {j.camera_id: (round(start + j.budget_left_s(), 1), i + 1 if j.phase == "queued" else None)
            for i, (j, start) in enumerate(zip(waiting, starts, strict=True))}
