"""A camera's refresh clock and verdict (service.refresh): when its model's next refresh is due, kept in
data_dir/cameras/{id}/refresh.json with the refresh that trains, and whether a refreshed model may replace the
active one."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

DAY_S = 86400.0


@dataclass
class RefreshState:
    """A camera's refresh clock and its running refresh, as kept in refresh.json."""

    version: str | None = None  # the active version the clock runs for
    since: float | None = None  # the clock's start for it (Unix time)
    last_attempt: float | None = None
    run: str | None = None  # the run folder of the refresh training now, None when none runs
    base: str | None = None  # the version that refresh started from
    pid: int | None = None
    frames: int = 0  # frames of footage it learns from
    segments: int = 0  # and the stretches of continuous footage they make
    train_minutes: float | None = None
    last: dict[str, Any] | None = None  # the outcome of the last refresh
    had_model: bool = False  # the clock ran for a model of the camera's own before (it has none now)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RefreshState:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def observe_active(state: RefreshState, version: str | None, created: float, now: float) -> bool:
    """Start the clock for the camera's active `version` when it is not the one the clock runs for: from its
    creation when the clock never ran (refresh just turned on), else from when it became active (a refresh, a
    relearn, a rollback, a model of its own again after none). None: the camera has no model of its own, and no
    clock runs. True when the state changed."""
    if state.version == version:
        return False
    if version is None:
        state.version, state.since, state.had_model = None, None, True
        return True
    never = state.version is None and not state.had_model
    state.since = created if never else max(created, now)
    state.version = version
    return True


def next_refresh_at(state: RefreshState, refresh_days: float) -> float | None:
    """When the camera's refresh is due (Unix time); None before its clock runs."""
    if state.since is None:
        return None
    return max(state.since, state.last_attempt or -math.inf) + refresh_days * DAY_S


def is_due(state: RefreshState, refresh_days: float, now: float) -> bool:
    at = next_refresh_at(state, refresh_days)
    return at is not None and now >= at


def judge(heldout_psnr: float | None, base_psnr: float | None, max_drop_db: float) -> str | None:
    """Why a refreshed model must not replace the active one (None: it may): its held-out PSNR against the
    active model's on the same held-out footage, in dB."""
    if heldout_psnr is None or base_psnr is None:
        return "held-out PSNR not measured for both models (a diverged run measures none)"
    if not math.isfinite(heldout_psnr):  # a diverged run (NaN) compares as never below anything
        return f"held-out PSNR {heldout_psnr} dB is not a number"
    if heldout_psnr < base_psnr - max_drop_db:
        return (f"held-out PSNR {heldout_psnr:.2f} dB, below the active model's {base_psnr:.2f} dB on the same "
                f"recent footage by more than {max_drop_db:g} dB")
    return None
