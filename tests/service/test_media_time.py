"""Alert and scene durations run on the camera's content time: a burst of buffered frames (content 0.1 s apart,
arriving 1 ms apart) raises an alert after min_duration of content, and the events report wall times."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_model_swap import predictor

from model import EventUpdate, FrameScores
from service.frames import CameraMessage, EventMessage, ScoreMessage, Window
from service.media_time import MediaClock, MediaTimeline
from service.pipeline import Pipeline
from service.settings import AlertSettings, CameraSettings, Settings
from service.store import EventStore

pytestmark = pytest.mark.timeout(60)
T0 = 1_800_000_000.0  # wall time of the burst's first window
M0 = 1_800_000_000.0  # its content time: a session starts at its first frame's wall time
HIGH, LOW = 10.0, -10.0  # raw anomaly scores: z = anomaly with the predictor's calibration (mean 0, std 1)
Msg = ScoreMessage | EventMessage | CameraMessage


def scores(anomaly: float) -> FrameScores:
    one = np.zeros(1, np.float32)
    cells = np.zeros((1, 1), np.float32)
    return FrameScores(one, one, one, one, one, one, np.full(1, anomaly, np.float32), None,
                       np.zeros((1, 8, 8), np.float32), cells, cells)


class Camera:
    """One camera of a pipeline fed windows by hand: a burst by default (content 0.1 s apart, wall 1 ms apart)."""

    def __init__(self, tmp_path: Path, now: Callable[[], float]) -> None:
        settings = Settings(data_dir=tmp_path, cameras=[], alerts=AlertSettings())
        self.store = EventStore.open(tmp_path)
        self.pipe = Pipeline(settings, predictor(0, 4, 0.0), self.store, clock=now)
        self.pipe.add_camera(CameraSettings(id="a", url="rtsp://cam.local/a", use_shipped=True))
        self.got: list[Msg] = []
        self.pipe.add_listener(self.got.append)
        self.i = 0
        self.last_ts = T0

    def feed(self, anomaly: float, wall_step: float = 0.001, media_step: float = 0.1, run: int = 0
             ) -> list[EventMessage]:
        """One window of the camera's `run` of unbroken frames; returns the event messages it caused."""
        model = self.pipe._cams["a"].model
        ts, media = T0 + self.i * wall_step, M0 + self.i * media_step
        w = Window("a", self.i, ts, np.zeros((5, 1, 64, 64), np.float32), np.zeros((8, 8, 3), np.uint8), model,
                   media_ts=media, run=run)
        self.i += 1
        self.last_ts = ts
        before = len(self.got)
        self.pipe._alerting.on_scores([w], scores(anomaly), 1.0)
        return [m for m in self.got[before:] if isinstance(m, EventMessage)]


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[Camera]:
    cam = Camera(tmp_path, lambda: cam.last_ts + 0.05)
    yield cam
    cam.store.close()


def test_a_burst_raises_the_alert_after_min_duration_of_content_time(camera: Camera) -> None:
    # Anomalous from the first window: above on_threshold at once, so the alert comes min_duration (0.4 s) of
    # content later, at the 5th window, although its wall time is only 4 ms after the first's.
    raised = [camera.feed(HIGH) for _ in range(8)]
    assert [i for i, msgs in enumerate(raised) if any(m.kind == "start" for m in msgs)] == [4]


def test_a_burst_ends_the_alert_after_hold_of_content_time_and_reports_wall_times(camera: Camera) -> None:
    msgs = [m for _ in range(8) for m in camera.feed(HIGH)]
    start = next(m for m in msgs if m.kind == "start")
    start_ts_of_window4 = T0 + 4 * 0.001
    # The first crossing (window 0), converted with the reporting window's offset: the wall time at which that
    # content was live, never after the window that raised it.
    assert start.event.start_ts <= start_ts_of_window4
    assert start.event.start_ts == pytest.approx(start_ts_of_window4 - 0.4, abs=1e-6)
    assert start.event.peak_ts <= start_ts_of_window4
    ends = [(i, m) for i in range(40) for m in camera.feed(LOW) if m.kind == "end"]
    # the smoothed score falls below off_threshold, then hold (1 s) of content passes: 10 windows, not 1 s of wall
    assert len(ends) == 1 and ends[0][0] >= 10, [i for i, _ in ends]
    end = ends[0][1]
    assert end.event.start_ts == start.event.start_ts  # every message of the event reports the same start
    assert end.event.end_ts is not None and start.event.start_ts <= end.event.end_ts <= camera.last_ts
    assert camera.last_ts - end.event.end_ts < 1.5  # wall time, not seconds of content after the burst's start
    stored = camera.store.get(end.event.id)
    assert stored is not None and (stored.start_ts, stored.end_ts) == (end.event.start_ts, end.event.end_ts)


def test_cooldown_is_content_time_too(camera: Camera) -> None:
    for _ in range(8):
        camera.feed(HIGH)
    assert any(m.kind == "end" for _ in range(40) for m in camera.feed(LOW))
    # cooldown (2 s) of content after the end: 20 windows in a burst of 20 ms; the next anomaly then alerts
    starts = [i for i in range(40) if any(m.kind == "start" for m in camera.feed(HIGH))]
    assert starts and 19 <= starts[0] <= 25, starts


def test_a_break_in_the_frames_restarts_what_the_engine_holds(camera: Camera) -> None:
    # Three windows above on_threshold (0.2 s held: min_duration is 0.4 s), then the stream breaks off: the next
    # windows are a new run, 10 s of content later. The crossing is held again from the new run's first window,
    # and its smoothing starts from that window's score alone.
    assert [m for _ in range(3) for m in camera.feed(HIGH)] == []
    camera.i += 100  # the outage
    first = camera.feed(HIGH, run=1)
    assert first == []
    raised = [camera.feed(HIGH, run=1) for _ in range(6)]
    assert [i for i, msgs in enumerate(raised) if any(m.kind == "start" for m in msgs)] == [3]  # 0.4 s after
    camera.i += 100
    camera.feed(LOW, run=2)  # after HIGH: a continued EMA would be far above LOW
    assert [m.smoothed for m in camera.got if isinstance(m, ScoreMessage)][-1] == pytest.approx(LOW)


def test_removing_a_camera_ends_its_event_at_the_wall_clocks_now(camera: Camera) -> None:
    for _ in range(8):
        camera.feed(HIGH)
    camera.pipe.remove_camera("a")
    end = [m for m in camera.got if isinstance(m, EventMessage) and m.kind == "end"]
    assert len(end) == 1
    assert end[0].event.end_ts == pytest.approx(camera.last_ts + 0.05, abs=1e-6)


def test_a_model_swap_ends_the_event_never_before_the_engines_latest_time(tmp_path: Path) -> None:
    # The wall clock reads earlier than the last window's capture time (it was stepped back): the event ends at
    # the engines' latest time, not before it.
    cam = Camera(tmp_path, lambda: T0 - 60.0)
    try:
        for _ in range(8):
            cam.feed(HIGH)
        cam.pipe.set_camera_model("a", predictor(1, 4, 0.0), version="other")
        end = [m for m in cam.got if isinstance(m, EventMessage) and m.kind == "end"]
        assert len(end) == 1 and end[0].event.end_ts == pytest.approx(cam.last_ts, abs=1e-6)
    finally:
        cam.store.close()


# -- the timeline and the clock themselves -----------------------------------------------------------------


def test_timeline_starts_each_session_at_its_first_frames_wall_time_and_never_goes_back() -> None:
    tl = MediaTimeline()
    # a burst: content 0.1 s apart, kept 1 ms apart; the session starts at its first frame's wall time
    assert [tl.stamp(0.1 * i, 100.0 + 0.001 * i, 0.1) for i in range(3)] == pytest.approx([100.0, 100.1, 100.2])
    assert tl.stamp(5.0, 105.0, 0.1) == pytest.approx(105.0)  # real time after it: content stays 0.1 s ahead
    tl.restart()  # a reconnect after a 30 s outage: the next session starts at its first frame's wall time
    assert tl.stamp(0.0, 135.0, 0.1) == pytest.approx(135.0)
    tl.restart()  # a reconnect whose first frame's wall time is before the timeline's latest: one period after it
    assert tl.stamp(0.0, 135.05, 0.1) == pytest.approx(135.1)
    assert tl.stamp(0.5, 135.1, 0.1) == pytest.approx(135.6)


def test_clock_converts_with_the_latest_offset_and_clamps_to_the_engines_latest_time() -> None:
    clock = MediaClock()
    assert clock.to_media(50.0) == 50.0  # nothing scored yet: no offset
    assert clock.observe(10.0, 12.0) == 12.0
    assert clock.to_wall(12.0) == 10.0 and clock.to_media(11.0) == 13.0
    assert clock.to_media(5.0) == 12.0  # never before the engines' latest time
    assert clock.observe(10.5, 11.0) == 12.0  # a window's content time never goes back either
    u = EventUpdate("end", "e", "a", start_ts=11.0, end_ts=12.5, peak_ts=11.5, peak_score=3.0, frames=3)
    w = clock.event_to_wall(u)
    assert (w.start_ts, w.peak_ts, w.end_ts) == pytest.approx((9.5, 10.0, 11.0))
