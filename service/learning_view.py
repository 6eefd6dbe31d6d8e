"""A camera's `learning` as GET /v1/cameras/{id} shows it (service.api.schemas.LearningPublic): built here only,
for a learning job, for a refresh in training and for a camera armed with a model it did not learn here.

A diverged training measures a held-out PSNR of NaN; JSON has no NaN (the API's responses refuse it), so a
number that is not finite is shown as null."""
from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value`, or None when it is a float that is not finite (NaN, infinity)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def finite_values(d: dict[str, Any] | None) -> dict[str, Any] | None:
    """`d` with its non-finite floats as None (an outcome kept on disk by an older version may hold NaN)."""
    return None if d is None else {k: finite_or_none(v) for k, v in d.items()}


def learning_view(phase: str, *, frames_recorded: int = 0, frames_wanted: int = 0, segments: int = 0,
                  footage_minutes: float = 0.0, progress: dict[str, Any] | None = None, train_minutes: float = 0.0,
                  eta_s: float | None = None, error: str | None = None, stopped: str | None = None,
                  queue_position: int | None = None) -> dict[str, Any]:
    """The learning fields; `progress`: the training's progress.json (step, steps_planned, minutes,
    heldout_psnr)."""
    p = progress or {}
    return {"phase": phase, "frames_recorded": frames_recorded, "frames_wanted": frames_wanted,
            "segments": segments, "footage_minutes": footage_minutes, "step": p.get("step"),
            "steps_planned": p.get("steps_planned"), "minutes": p.get("minutes"), "train_minutes": train_minutes,
            "heldout_psnr": finite_or_none(p.get("heldout_psnr")), "eta_s": eta_s, "error": error,
            "stopped": stopped, "queue_position": queue_position}
