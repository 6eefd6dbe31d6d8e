"""Event-level evaluation on a known episode layout: known recall, false alarms and delays."""
from __future__ import annotations

import numpy as np
import pytest

from model import AlertParams, Calibration, ClipAlerts
from model.events import episodes, evaluate_events, replay, threshold_sweep

CAL = Calibration(mean={"anomaly": 0.0}, std={"anomaly": 1.0}, quantiles={}, frames=100, source="test")
FPS, K = 10.0, 4
PARAMS = AlertParams(on_threshold=4.0, off_threshold=2.5, min_duration_s=0.25, hold_s=0.5, cooldown_s=1.0,
                     smoothing_half_life_frames=0)


def layout() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Raw scores (z = score with CAL) and labels of three 100-frame videos:
    a: episode 30..59, the score jumps to 9 at frame 33      -> alerted, raised at frame 36: delay 0.6 s
    b: episode 0..19 (before the first scored frame 4), 9 from frame 4 -> raised at frame 7: delay 0.3 s;
       and a normal burst at 60..69                         -> one false alarm
    c: episode 40..59, the score stays at 3 (below on)       -> missed
    """
    scores = {n: np.zeros(100) for n in "abc"}
    labels = {n: np.zeros(100, np.int64) for n in "abc"}
    labels["a"][30:60] = 1
    scores["a"][33:60] = 9
    labels["b"][0:20] = 1
    scores["b"][0:20] = 9
    scores["b"][60:70] = 9
    labels["c"][40:60] = 1
    scores["c"][40:60] = 3
    return scores, labels


def test_episodes_are_maximal_runs_of_anomalous_frames() -> None:
    assert episodes(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1])) == [(0, 2), (4, 5), (6, 9)]
    assert episodes(np.zeros(5)) == []


def test_replay_raises_the_engines_alerts_at_the_videos_times() -> None:
    scores, _ = layout()
    (alert,) = replay(scores["a"], K, CAL, PARAMS, FPS)
    assert alert.start_s == pytest.approx(3.3) and alert.raised_s == pytest.approx(3.6)
    assert alert.end_s == pytest.approx(6.0)  # below off from frame 60 on


def test_known_layout_gives_known_recall_false_alarms_and_delays() -> None:
    scores, labels = layout()
    m = evaluate_events(scores, labels, K, CAL, PARAMS, FPS)
    assert (m["episodes"], m["episodes_alerted"], m["false_alarms"]) == (3, 2, 1)
    assert m["event_recall"] == pytest.approx(2 / 3)
    normal_hours = (3 * (100 - K) - 30 - (20 - K) - 20) / FPS / 3600
    assert m["false_alarms_per_hour"] == pytest.approx(1 / normal_hours)
    assert m["delay_s_median"] == pytest.approx(0.45) and m["delay_s_max"] == pytest.approx(0.6)
    assert [(e["video"], e["alerted"]) for e in m["episode_detail"]] == [("a", True), ("b", True), ("c", False)]


def test_the_frame_rate_scales_the_delays() -> None:
    scores, labels = layout()
    m = evaluate_events(scores, labels, K, CAL, PARAMS, 5.0)  # min_duration 0.25 s: 2 frames at 5 fps
    assert m["delay_s_max"] == pytest.approx((35 - 30) / 5.0)


def test_sweep_marks_the_operating_point_and_recall_falls_as_the_threshold_rises() -> None:
    scores, labels = layout()
    rows = threshold_sweep(scores, labels, K, CAL, PARAMS, FPS, thresholds=(1.0, 2.0, 8.0, 10.0))
    assert [r["on_threshold"] for r in rows] == [1.0, 2.0, 4.0, 8.0, 10.0]
    (op,) = [r for r in rows if r["operating_point"]]
    assert op["on_threshold"] == 4.0 and op["event_recall"] == pytest.approx(2 / 3) and op["false_alarms"] == 1
    assert rows[0]["event_recall"] == 1.0  # the missed episode's 3 clears on_threshold 1 (and 2)
    assert rows[-1]["event_recall"] == 0.0 and rows[-1]["false_alarms"] == 0
    recalls = [r["event_recall"] for r in rows]
    assert recalls == sorted(recalls, reverse=True)


def test_an_alert_raised_before_the_episode_is_a_false_alarm_not_a_catch() -> None:
    # the score sticks above on_threshold from the first scored frame: one alert spans the whole video
    scores = {"v": np.r_[np.zeros(K), np.full(96, 9.0)]}
    labels = {"v": np.r_[np.zeros(50, np.int64), np.ones(50, np.int64)]}
    m = evaluate_events(scores, labels, K, CAL, PARAMS, FPS)
    assert (m["episodes"], m["episodes_alerted"], m["false_alarms"]) == (1, 0, 1)
    assert m["delay_s_median"] is None


def test_a_clip_replays_on_its_own_timeline_and_an_event_open_at_its_end_closes_at_its_last_frame() -> None:
    """ClipAlerts (ffp score, POST /v1/score, ffp eval): frame i at i/fps, z from the calibration, and close()
    ends an event still open at the last frame's time."""
    params = AlertParams(on_threshold=2.0, off_threshold=1.0, min_duration_s=0.0, hold_s=0.0, cooldown_s=0.0,
                         smoothing_half_life_frames=0.0)
    timeline = ClipAlerts(CAL, params, fps=10.0)
    updates = []
    for i in range(4, 10):  # the first 4 frames of a clip have no score
        z, got = timeline.update(i, 0.0 if i < 6 else 5.0)
        assert z == (0.0 if i < 6 else 5.0) and timeline.time == pytest.approx(i / 10)
        updates += got
    assert [(u.kind, u.start_ts) for u in updates] == [("start", pytest.approx(0.6))]
    end = timeline.close()
    assert [(u.kind, u.end_ts) for u in end] == [("end", pytest.approx(0.9))]
    assert ClipAlerts(CAL, params, fps=10.0).close() == []  # nothing scored: nothing to close
