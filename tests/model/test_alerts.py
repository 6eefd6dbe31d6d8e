from __future__ import annotations

import itertools

import numpy as np
import pytest

from model import AlertEngine, AlertParams, Calibration, CameraCalibration, EventUpdate

CAL = Calibration(mean={"anomaly": 0.0}, std={"anomaly": 1.0}, quantiles={}, frames=100, source="test")
FPS = 10


def engine(**kw: float | None) -> AlertEngine:
    base = {"on_threshold": 4.0, "off_threshold": 2.5, "min_duration_s": 0.3, "hold_s": 0.5, "cooldown_s": 1.0,
            "smoothing_half_life_frames": 0, "update_interval_s": 10.0}
    ids = (f"ev{i}" for i in itertools.count())
    return AlertEngine("cam", AlertParams(**{**base, **kw}), new_id=lambda: next(ids))


def run(e: AlertEngine, values: list[float], t0: float = 0.0) -> list[tuple[str, str, float]]:
    """Feed calibrated scores z, one frame every 1/FPS s."""
    out = []
    for i, v in enumerate(values):
        now = t0 + i / FPS
        out += [(u.kind, u.event_id, round(now, 2)) for u in e.update(v, now)]
    return out


class Camera:
    """A camera's calibration and engine, wired as the pipeline and a clip wire them."""

    def __init__(self, settings: AlertParams, calibration: Calibration | None) -> None:
        self.cal = CameraCalibration(calibration, settings)
        self.engine = AlertEngine("cam", settings)

    def update(self, anomaly: float, now: float) -> list[EventUpdate]:
        return self.engine.update(self.cal.z(anomaly, now), now)


pytestmark = pytest.mark.timeout(10)


def test_spike_shorter_than_min_duration_is_ignored() -> None:
    assert run(engine(), [0, 0, 9, 9, 0, 0, 0]) == []


def test_start_after_min_duration_then_end_after_hold() -> None:
    e = engine()
    msgs = run(e, [0] * 3 + [9] * 10 + [0] * 10)
    assert msgs[0] == ("start", "ev0", 0.6)  # above on since 0.3 s, held for min_duration 0.3 s
    assert msgs[-1] == ("end", "ev0", 1.8)  # below off since 1.3 s, hold 0.5 s
    assert [m[0] for m in msgs] == ["start", "end"]


def test_hysteresis_keeps_event_open_between_off_and_on() -> None:
    e = engine(hold_s=0.0, update_interval_s=1.0)
    msgs = run(e, [9] * 5 + [3] * 20 + [2] * 2)  # 3 is below on but above off: stays active
    assert [m[0] for m in msgs] == ["start", "update", "update", "end"]


def test_hold_bridges_short_dips() -> None:
    e = engine()
    msgs = run(e, [9] * 5 + [0] * 3 + [9] * 3 + [0] * 10)  # dip of 0.3 s < hold 0.5 s
    assert [m[0] for m in msgs] == ["start", "end"]


def test_cooldown_blocks_new_event_right_after_end() -> None:
    e = engine(hold_s=0.0, cooldown_s=1.0)
    values = [9] * 5 + [0] * 2 + [9] * 5 + [0] * 10 + [9] * 5 + [0] * 2
    kinds = [(k, i) for k, i, _ in run(e, values)]
    # The second burst starts 0.6 s after the end (inside cooldown): no event; the third is after it.
    assert kinds == [("start", "ev0"), ("end", "ev0"), ("start", "ev1"), ("end", "ev1")]


def test_event_fields_peak_and_end_time() -> None:
    e = engine(hold_s=0.5)
    updates = []
    for i, v in enumerate([0, 5, 7, 6, 5, 0, 0, 0, 0, 0, 0]):
        updates += e.update(v, 100 + i / FPS)
    start, end = updates[0], updates[-1]
    assert start.kind == "start" and start.start_ts == pytest.approx(100.1)
    assert end.kind == "end" and end.peak_score == 7 and end.peak_ts == pytest.approx(100.2)
    assert end.end_ts == pytest.approx(100.5)  # when the score fell below off, not when hold expired
    assert end.frames >= 4


def test_smoothing_damps_a_single_frame() -> None:
    e = engine(min_duration_s=0.0, smoothing_half_life_frames=3)
    assert run(e, [0] * 10 + [8] + [0] * 10) == []  # EMA of one 8 stays below on=4
    assert e.smoothed is not None and e.smoothed < 1


def test_close_ends_active_event() -> None:
    e = engine()
    run(e, [9] * 6)
    assert e.active
    (end,) = e.close(5.0)
    assert end.kind == "end" and not e.active


def test_warmup_without_calibration_learns_the_camera() -> None:
    c = Camera(AlertParams(warmup_s=1.0, min_duration_s=0, smoothing_half_life_frames=0), None)
    for i in range(20):  # 2 s of normal footage around -50 +- 1
        assert c.update(-50.0 + (1 if i % 2 else -1), i / FPS) == []
        if i < 10:
            assert c.engine.score is None and c.cal.calibration is None  # nothing to compare with yet
    assert c.engine.score is not None and abs(c.engine.score) < 2
    assert c.cal.calibration is not None and c.cal.calibration.mean["anomaly"] == pytest.approx(-50, abs=0.2)
    (start,) = c.update(-30.0, 2.1)
    assert start.kind == "start"  # 20 std above the camera's normal


def test_warmup_blends_with_shipped_calibration() -> None:
    c = Camera(AlertParams(warmup_s=0.5, warmup_blend=0.5, smoothing_half_life_frames=0), CAL)
    for i in range(10):
        c.update(10.0 + (0.5 if i % 2 else -0.5), i / FPS)  # this camera runs 10 above the shipped mean
        if i < 5:
            assert c.cal.calibration is CAL  # during warm-up: the shipped calibration, z published and used
            assert c.engine.score == pytest.approx(10.0 + (0.5 if i % 2 else -0.5))
    c.update(10.0, 1.0)
    # mean 0 -> 5, std 1 -> 0.75: z of 10 is (10 - 5) / 0.75
    assert c.engine.score == pytest.approx(5 / 0.75, rel=0.05)


def test_warmup_produces_an_adapted_calibration_whose_z_the_engine_uses() -> None:
    c = Camera(AlertParams(warmup_s=0.5, warmup_blend=0.25, smoothing_half_life_frames=0), CAL)
    values = [10.0 + (0.5 if i % 2 else -0.5) for i in range(10)]  # MIN_WARMUP_FRAMES
    for i, v in enumerate(values):
        c.update(v, i / FPS)
    adapted = c.cal.calibration
    assert adapted is not None and adapted is not CAL and adapted.quantiles == {}
    assert adapted.mean["anomaly"] == pytest.approx(0.25 * np.mean(values))
    assert adapted.std["anomaly"] == pytest.approx(0.75 * 1.0 + 0.25 * np.std(values))
    c.update(12.0, 1.0)
    assert c.engine.score == adapted.z(12.0)  # the one formula, and the z the engine was given
    assert CAL.adapted(3.0, 2.0, 10, 0.0).z(5.0) == CAL.z(5.0)  # blend 0: the shipped calibration
    assert CAL.adapted(3.0, 2.0, 10, 1.0).z(5.0) == 1.0  # blend 1: the camera's alone


def test_non_finite_scores_are_skipped() -> None:
    c = Camera(AlertParams(smoothing_half_life_frames=2), CAL)
    c.update(1.0, 0.0)
    assert c.update(float("nan"), 0.1) == [] and c.engine.score is None and c.engine.smoothed is None
    c.update(1.0, 0.2)
    assert c.engine.smoothed == 1.0  # the EMA never saw the NaN


def test_strong_crossing_raises_at_once_a_moderate_one_waits() -> None:
    e = engine(strong_margin=3.0)  # strong from 7.0
    msgs = run(e, [0, 0, 8, 8, 8, 0, 0, 0, 0, 0])
    assert msgs[0] == ("start", "ev0", 0.2)  # no wait for min_duration 0.3 s
    e = engine(strong_margin=3.0)
    assert run(e, [0, 0, 6, 6, 6, 6, 0])[0] == ("start", "ev0", 0.5)  # below on + margin: waits min_duration
    assert run(engine(), [0, 0, 8, 8, 0, 0]) == []  # without the margin the short burst is filtered


def test_strong_crossing_keeps_cooldown_and_start_at_first_crossing() -> None:
    e = engine(strong_margin=1.0, hold_s=0.0, cooldown_s=1.0)
    msgs = run(e, [4.5, 9, 0, 0, 9, 9, 0])  # the second burst is inside the cooldown
    assert [(k, t) for k, _, t in msgs] == [("start", 0.1), ("end", 0.2)]
    e = engine(strong_margin=1.0)
    (start,) = [u for u in e.update(4.5, 0.0) + e.update(9.0, 0.1) if u.kind == "start"]
    assert start.start_ts == 0.0 and start.peak_score == 9.0  # starts where it crossed on_threshold


def test_params_reject_a_negative_strong_margin() -> None:
    with pytest.raises(ValueError, match="strong_margin"):
        AlertParams(strong_margin=-1.0)


def test_params_reject_off_above_on() -> None:
    with pytest.raises(ValueError, match="off_threshold"):
        AlertParams(on_threshold=2, off_threshold=3)


@pytest.mark.parametrize("start", range(10))
def test_min_duration_counts_frames_not_float_rounding(start: int) -> None:
    """At 10 fps a 0.4 s minimum is four frame intervals wherever the crossing falls: timestamps i / fps make
    differences such as 0.7 - 0.3 = 0.39999999999999997, which must not cost one more frame."""
    e = engine(min_duration_s=0.4)
    values = [0.0] * start + [9.0] * 10
    starts = [t for kind, _, t in run(e, values) if kind == "start"]
    assert starts == [round((start + 4) / FPS, 2)]


def test_a_crossing_is_not_held_across_a_break_in_the_frames() -> None:
    # Above on for 0.2 s, a break of a minute, then one frame above on: 60 s passed since the first crossing, but
    # it was held on three frames seen. After the break the crossing counts from its first frame.
    e = engine()
    assert run(e, [9, 9, 9]) == []
    e.restart()
    assert run(e, [9, 9, 9], t0=60.0) == []  # 0.2 s held since the break: min_duration 0.3 not reached
    start = e.update(9, 60.3)
    assert [u.kind for u in start] == ["start"] and start[0].start_ts == 60.0


def test_smoothing_starts_again_after_a_break() -> None:
    e = engine(smoothing_half_life_frames=2.0)
    run(e, [9] * 20)
    assert e.smoothed is not None and e.smoothed > 8
    e.restart()
    e.update(1.0, 10.0)
    assert e.smoothed == 1.0  # the score alone, as the first frame of a clip


def test_an_open_event_stays_open_across_a_break_and_ends_by_the_usual_rule() -> None:
    e = engine()
    msgs = run(e, [9] * 6 + [0])  # started, then below off since 0.6 s
    assert [m[0] for m in msgs] == ["start"] and e.active
    e.restart()
    assert e.active  # a break alone ends nothing
    # Still below off after the break: the fall that began before it counts on, and the event ends at it.
    end = e.update(0, 1.1)
    assert [u.kind for u in end] == ["end"] and end[0].end_ts == 0.6
    # A score back above off after a break keeps an event open as without a break.
    e2 = engine()
    run(e2, [9] * 6 + [0])
    e2.restart()
    assert e2.update(3, 1.1) == [] and e2.active


@pytest.mark.parametrize("field", ["on_threshold", "off_threshold", "min_duration_s", "strong_margin"])
def test_params_reject_non_finite_numbers(field: str) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            AlertParams(**{field: bad})
