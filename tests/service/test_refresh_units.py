"""The refresh's parts without a service: its clock and its verdict (time as an argument), the recent footage
that leaves alerts out (real files), and the rolling window that drops its oldest frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model import Footage
from model.recipes import recipe_model
from service.recent_footage import CleanFootage
from service.refresh_state import DAY_S, RefreshState, is_due, judge, next_refresh_at, observe_active

CONFIG = recipe_model("camera-lite")


def frame(value: int) -> np.ndarray:
    """A uniform picture whose grey level tells which frame it was."""
    return np.full((96, 128, 3), value, np.uint8)


def recent_footage(root: Path, *, max_frames: int = 10_000, margin_s: float = 0.0,
                   hold_s: float = 0.0) -> CleanFootage:
    return CleanFootage(root, CONFIG, fps=10, max_frames=max_frames, max_bytes=1 << 30, margin_s=margin_s,
                        hold_s=hold_s)


def feed(rec: CleanFootage, frames: range) -> None:
    """Frames i at i / 10 s, none fresh, each scored at once."""
    for i in frames:
        rec.tap(frame(i), i / 10, fresh=False)
        rec.scored(i / 10)


def stored_values(root: Path) -> list[list[int]]:
    return [[int(f[0, 0]) for f in seg] for seg in Footage(root).segments()]


def test_clock_runs_from_creation_then_from_activation_and_attempts() -> None:
    st = RefreshState()
    assert next_refresh_at(st, 1.0) is None and not is_due(st, 1.0, 1e12)
    assert observe_active(st, "v0001", created=1000.0, now=5000.0)  # refresh turned on: from its creation
    assert st.since == 1000.0 and next_refresh_at(st, 1.0) == 1000.0 + DAY_S
    assert not observe_active(st, "v0001", created=1000.0, now=9000.0)  # the same model: the clock runs on
    assert not is_due(st, 1.0, 1000.0 + DAY_S - 1) and is_due(st, 1.0, 1000.0 + DAY_S)
    st.last_attempt = 1000.0 + DAY_S  # an attempt that failed is not retried at once
    assert not is_due(st, 1.0, 1000.0 + DAY_S + 60) and next_refresh_at(st, 1.0) == 1000.0 + 2 * DAY_S
    assert observe_active(st, "v0000", created=10.0, now=3 * DAY_S)  # a rollback to an old model: from now
    assert st.since == 3 * DAY_S and not is_due(st, 1.0, 3 * DAY_S + 1)
    saved = RefreshState.from_dict({**st.__dict__, "unknown": 1})
    assert saved == st  # what refresh.json keeps (a field of a later version is ignored)


def test_verdict_on_held_out_psnr() -> None:
    assert judge(30.0, 30.2, 0.5) is None
    assert judge(31.0, 30.0, 0.5) is None
    reason = judge(29.4, 30.0, 0.5)
    assert reason is not None and "29.40" in reason and "30.00" in reason
    assert judge(None, 30.0, 0.5) is not None  # not measured: not activated
    assert judge(float("nan"), 30.0, 0.5) is not None  # a diverged run is not activated either


def test_recent_footage_leaves_out_alerts_with_margins_and_cuts_segments(tmp_path: Path) -> None:
    root = tmp_path / "recent"
    rec = recent_footage(root, margin_s=1.0, hold_s=2.5)
    for i in range(200):
        ts = i / 10
        rec.tap(frame(i), ts, fresh=i == 0)
        rec.scored(ts - 0.3)  # scores come a little after the frames
        if i == 85:  # the alert starts at 8.0 s and is known at 8.5 s (after its min_duration)
            rec.exclude("a", 8.0, None)
        if i == 105:
            rec.exclude("a", 8.0, 10.0)  # it ends at 10.0 s
    rec.scored(1e9)
    rec.close()
    segs = stored_values(root)
    assert segs == [list(range(0, 70)), list(range(111, 200))], [(s[0], s[-1], len(s)) for s in segs]
    assert rec.excluded == 41


def test_an_open_exclusion_holds_everything_after_it(tmp_path: Path) -> None:
    root = tmp_path / "recent"
    rec = recent_footage(root, margin_s=0.5, hold_s=4.0)
    for i in range(100):
        rec.tap(frame(i), i / 10, fresh=False)
        rec.scored(i / 10)
        if i == 70:  # a scene change since 4.0 s, raised at 7.0 s (hold 3 s): still going at the end
            rec.exclude("s", 4.0, None)
    rec.scored(1e9)
    rec.close()
    assert stored_values(root) == [list(range(0, 35))]


def test_a_full_rolling_window_holds_its_frames_between_any_two(tmp_path: Path) -> None:
    rec = recent_footage(tmp_path / "recent", max_frames=40)
    sizes = []
    for i in range(200):
        rec.tap(frame(i), i / 10, fresh=False)
        rec.scored(i / 10)
        if rec.enough():
            sizes.append(rec.frames)
    rec.close()
    assert sizes and min(sizes) >= 40 and max(sizes) <= 50


def test_rolling_window_drops_its_oldest_frames_and_is_then_enough(tmp_path: Path) -> None:
    root = tmp_path / "recent"
    rec = recent_footage(root, max_frames=40)
    feed(rec, range(30))
    assert not rec.enough() and rec.frames == 30
    for i in range(30, 130):
        rec.tap(frame(i), i / 10, fresh=i == 90)  # a gap at 9 s: a new segment
        rec.scored(i / 10)
    assert rec.enough() and rec.writer.dropped > 0
    rec.close()
    values = [v for seg in stored_values(root) for v in seg]
    # once full, the window never holds less than its 40 frames (and at most one chunk of 10 more)
    assert values == list(range(130 - len(values), 130)) and 40 <= len(values) <= 50
    moved = rec.rotate(tmp_path / "run" / "footage")  # a refresh takes the window; recording goes on empty
    assert moved == len(values) and Footage(tmp_path / "run" / "footage").frames == moved and rec.frames == 0


def test_refresh_settings_are_validated() -> None:
    import pytest

    from service.settings import SettingsError, load_settings

    assert load_settings(None).learning.refresh_days is None  # off by default
    s = load_settings(None, learning={"refresh_days": 7, "train_minutes": 15})
    assert s.learning.refresh_days == 7 and s.learning.refresh_budget_minutes == 5.0
    for bad in ({"refresh_days": 0}, {"refresh_days": -1}, {"refresh_train_minutes": 0},
                {"refresh_max_psnr_drop_db": -0.1}, {"refresh_margin_s": -1}):
        with pytest.raises(SettingsError, match="refresh"):
            load_settings(None, learning=bad)


def test_finished_runs_are_pruned_but_the_latest_and_a_running_one(tmp_path: Path) -> None:
    from service.training_run import next_run, prune_runs

    folder = tmp_path / "cam"
    assert prune_runs(folder) == []  # no runs yet
    for n in (1, 2, 3, 9, 10, 11):
        run = folder / "runs" / f"run-{n:04d}"
        run.mkdir(parents=True)
        (run / "final.pt").write_bytes(b"weights")
        (run / "learn.log").write_text("log")
    (folder / "runs" / "notes").mkdir()  # not a run folder: never touched
    (folder / "footage").mkdir()
    deleted = prune_runs(folder, keep=2, spare=("run-0002",))
    assert deleted == ["run-0001", "run-0003", "run-0009"]
    left = sorted(p.name for p in (folder / "runs").iterdir())
    assert left == ["notes", "run-0002", "run-0010", "run-0011"] and (folder / "footage").is_dir()
    assert next_run(folder) == "run-0012"  # numbering goes on after the latest kept
    assert prune_runs(folder, keep=1) == ["run-0002", "run-0010"]  # once nothing runs, the spared one goes too


def test_closed_recent_footage_ignores_frames_capture_still_taps(tmp_path: Path) -> None:
    root = tmp_path / "recent"
    rec = recent_footage(root)
    feed(rec, range(10))
    rec.close()
    before = stored_values(root)
    for i in range(10, 20):  # capture stops after the recording: its frames go nowhere
        rec.tap(frame(i), i / 10, fresh=False)
        rec.scored(i / 10)
        rec.exclude("e", i / 10, None)
    assert stored_values(root) == before == [list(range(10))]
    assert all(json.loads((d / "meta.json").read_text())["closed"] for d in Footage(root).segment_dirs())


def test_recent_footage_recovers_from_a_write_error(tmp_path: Path) -> None:
    root = tmp_path / "recent"
    rec = recent_footage(root)
    feed(rec, range(1))

    def full_disk(img: np.ndarray, ts: float) -> None:
        raise OSError(28, "No space left on device")
    rec.writer.append_prepared = full_disk  # type: ignore[method-assign]
    feed(rec, range(1, 5))
    assert rec.error is not None and "No space left" in rec.error
    rec.recover()  # the learning thread's poll: a new writer, a new segment
    assert rec.error is not None  # until a frame is written again
    feed(rec, range(5, 8))
    assert rec.error is None
    rec.close()
    assert stored_values(root) == [[0], [5, 6, 7]]


def test_the_learning_view_never_holds_a_number_json_cannot_send() -> None:
    from service.api.schemas import LearningPublic
    from service.learning_view import finite_values, learning_view

    view = {**learning_view("training", progress={"heldout_psnr": float("nan"), "step": 3}, train_minutes=1.0),
            "last_refresh": finite_values({"heldout_psnr": float("nan"), "base_heldout_psnr": 30.0})}
    body = LearningPublic.model_validate(view).model_dump()
    json.dumps(body, allow_nan=False)  # what Starlette's JSONResponse does: ValueError on a NaN
    assert body["heldout_psnr"] is None and body["step"] == 3
    assert body["last_refresh"] == {"heldout_psnr": None, "base_heldout_psnr": 30.0}
