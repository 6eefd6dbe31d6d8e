"""One camera's learning job: what it was asked for, where it stands (its phase), and its running parts; its state
on disk (`saved`) and as GET /v1/cameras/{id} shows it (`view`). service.learning drives it."""
from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .learning_view import learning_view
from .recording import FootageRecording

Phase = Literal["recording", "queued", "training", "done", "failed", "cancelled"]
BUSY: tuple[Phase, ...] = ("recording", "queued", "training")  # a job owns the camera: no relearn, no refresh


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
