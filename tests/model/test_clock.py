"""model.clock: the content time of a live stream's frames (StreamClock), their decimation (Decimator) and where
their history restarts (FrameKeeper), shared by the service's capture and `ffp learn`."""
from __future__ import annotations

import numpy as np
import pytest

from model.clock import STREAM_FALLBACK_FPS, Decimator, FrameKeeper, KeptFrame, StreamClock, native_fps


def test_decimator_keeps_frames_at_the_rate_by_content_time() -> None:
    d = Decimator(10)
    kept = [t for t in (i / 25 for i in range(250)) if d.keep(t)]
    assert len(kept) == 100
    assert np.allclose(np.diff(kept), 0.1, atol=0.04 + 1e-9)
    assert np.diff(kept).max() <= d.max_gap(1 / 25)  # an unbroken stream is no gap
    # a gap: the slots restart half a period after the frame that ends it, not where they were
    d = Decimator(10)
    assert [t for t in (0.0, 0.05, 0.1, 5.0, 5.05, 5.1, 5.15) if d.keep(t)] == [0.0, 0.1, 5.0, 5.05, 5.15]
    with pytest.raises(ValueError, match="fps"):
        Decimator(0)


def test_decimator_never_keeps_two_frames_closer_than_half_a_period() -> None:
    """A stream timed on arrival jitters: a frame late for its slot must not make the next one count as on time."""
    rng = np.random.default_rng(0)
    times = np.sort(np.arange(500) / 25 + rng.uniform(0, 0.035, 500))
    d = Decimator(10)
    kept = [t for t in times if d.keep(float(t))]
    assert np.diff(kept).min() >= 0.05 - 1e-6
    assert 190 <= len(kept) <= 200  # still about 10 fps


def test_stream_clock_falls_back_to_arrival_time_and_never_runs_backwards() -> None:
    c = StreamClock(0.04)
    assert [c.time(100.0 + 0.01 * i, 5.0 + 0.04 * i) for i in range(3)] == pytest.approx([0.0, 0.04, 0.08])
    t = c.time(100.03, 1.0)  # the stream's clock restarted: a jump, time carries on
    assert c.jumped and t >= 0.08
    assert c.time(100.04, 1.04) == pytest.approx(t + 0.04) and not c.jumped
    # a source whose presentation time stands still (a webcam reporting 0): arrival time after STUCK_S
    c = StreamClock(0.04)
    times = [c.time(50.0 + 0.1 * i, 0.0) for i in range(16)]
    # (the second frame repeats the first one's 0: the first is taken for one frame before it, see below)
    assert times[:11] == pytest.approx([0.0] + [0.04] * 10) and c.use_pts is False and times[-1] > 0.04
    assert all(np.diff(times) >= 0)
    # no presentation time at all: arrival time from the first frame, no jump
    c = StreamClock(0.04)
    assert [c.time(7.0 + 0.5 * i, None) for i in range(3)] == [0.0, 0.5, 1.0] and not c.jumped


def test_stream_clock_places_a_first_frame_without_time_one_frame_before_the_second() -> None:
    """Over RTSP FFmpeg stamps a session's first frame N/A: model.stream gives it no time, OpenCV's reader the
    second frame's (0 ms for both). Either way the first frame is one frame before the second: no frame gets a
    duplicate time, so none is decimated away."""
    c = StreamClock(0.1)
    assert [c.time(3.0 + 0.01 * i, pts) for i, pts in enumerate([None, 7.04, 7.14, 7.24])] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3])
    assert not c.jumped and c.use_pts
    c = StreamClock(0.1)
    assert [c.time(3.0 + 0.01 * i, ms / 1000) for i, ms in enumerate([0, 0, 100, 200])] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3])
    assert not c.jumped and c.use_pts
    with pytest.raises(ValueError, match="frame_s"):
        StreamClock(0.0)


def test_frame_age_counts_from_content_time_not_from_reads() -> None:
    """A frozen server still yields frames (the decoder's buffered ones, one per read timeout, 40 ms of content
    each): fresh_at stands still while reads succeed. A healthy stream and its connect burst keep it current."""
    c = StreamClock(0.04)
    for i in range(25):  # the connect burst: one second of content within 0.1 s
        c.time(100.0 + i * 0.004, 5.0 + i * 0.04)
        assert c.fresh_at(100.0 + i * 0.004) == pytest.approx(100.0 + i * 0.004)
    for i in range(25, 75):  # then in real time, with jitter
        arrival = 100.1 + (i - 25) * 0.04 + (0.01 if i % 3 else 0.0)
        c.time(arrival, 5.0 + i * 0.04)
        assert arrival - c.fresh_at(arrival) < 0.02
    frozen_at = arrival
    for k in range(1, 4):  # frozen: a frame per 1.5 s read timeout, each 40 ms of content
        arrival = frozen_at + 1.5 * k
        c.time(arrival, 5.0 + 74 * 0.04 + 0.04 * k)
        assert c.fresh_at(arrival) < frozen_at + 0.2
    # A source without presentation times is timed on arrival: every read is fresh.
    c = StreamClock(0.04)
    for t in (1.0, 2.0, 3.0):
        c.time(t, None)
        assert c.fresh_at(t) == t


def test_native_fps_is_the_reported_rate_when_plausible_else_the_fallback() -> None:
    assert native_fps(12.5) == 12.5 and native_fps(240.0) == 240.0
    # missing (None, OpenCV's 0 or -1), or what many RTSP cameras and odd files report
    for reported in (None, 0.0, -1.0, float("nan"), float("inf"), 0.1, 1000.0, 90000.0):
        assert native_fps(reported) == STREAM_FALLBACK_FPS, reported


def kept_of(keeper: FrameKeeper, frames: list[tuple[float, float | None]]) -> list[KeptFrame | None]:
    return [keeper.read(arrival, pts) for arrival, pts in frames]


def test_frame_keeper_decimates_a_session_on_its_content_time() -> None:
    """A connect burst (25 fps content arriving at once) kept at 10 fps, the history unbroken after its first
    frame; each kept frame knows the one kept before it."""
    keeper = FrameKeeper(10)
    keeper.start(0.04)
    kept = kept_of(keeper, [(100.0, i * 0.04) for i in range(25)])
    assert [i for i, k in enumerate(kept) if k is not None] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23]
    frames = [k for k in kept if k is not None]
    assert [k.t for k in frames] == pytest.approx([i * 0.04 for i in (0, 3, 5, 8, 10, 13, 15, 18, 20, 23)])
    assert all(k.restart is None for k in frames)
    assert frames[0].previous is None and [k.previous for k in frames[1:]] == [k.t for k in frames[:-1]]
    assert keeper.last_kept == frames[-1].t


def test_frame_keeper_restarts_the_history_at_a_gap() -> None:
    """Kept frames further apart than Decimator.max_gap (frames lost, a camera that froze) restart the history at
    the frame after the gap, and only there."""
    keeper = FrameKeeper(10)
    keeper.start(0.1)
    assert keeper.decimator.max_gap(0.1) == pytest.approx(0.25)
    # 0.2 -> 0.4 is two periods: within max_gap (a period, one source frame and half a period to spare) it is not
    kept = kept_of(keeper, [(10.0, 0.0), (10.1, 0.1), (10.2, 0.2), (10.4, 0.4), (11.4, 1.4), (11.5, 1.5)])
    assert [k.restart if k else "skipped" for k in kept] == [None, None, None, None, FrameKeeper.GAP, None]
    gap = kept[4]
    assert gap is not None and gap.previous == pytest.approx(0.4)  # the frame before the gap


def test_frame_keeper_restarts_the_history_where_the_timeline_broke() -> None:
    """The stream's clock restarting (StreamClock.jumped) breaks the history even when the frame that broke it is
    decimated away: the next kept frame restarts it, with no frame before it to measure a gap or a catch-up on."""
    keeper = FrameKeeper(10)
    keeper.start(0.1)
    kept = kept_of(keeper, [(20.0, 7.0), (20.1, 7.1), (20.2, 3.0), (20.3, 3.1), (20.4, 3.2)])
    assert kept[2] is None and keeper.clock is not None  # carried on from 7.1's time: too soon to be kept
    assert [k.restart if k else "skipped" for k in kept] == [None, None, "skipped", FrameKeeper.BROKEN, None]
    assert kept[3] is not None and kept[3].previous is None
    assert kept[4] is not None and kept[4].previous == kept[3].t


def test_frame_keeper_starts_decimation_and_the_history_afresh_after_an_outage() -> None:
    """After an outage the next session has its own clock (content time from 0 again) and fresh decimation slots;
    its first kept frame restarts the history. A new session without an outage (a looped file's next run) keeps
    the slots: its media time runs on."""
    keeper = FrameKeeper(10)
    keeper.start(0.1)
    assert [k is not None for k in kept_of(keeper, [(10.0, 5.0), (10.1, 5.1), (10.2, 5.2)])] == [True] * 3
    keeper.outage()
    assert keeper.clock is None
    with pytest.raises(RuntimeError, match="start"):
        keeper.read(20.0, 9.0)
    keeper.start(0.1)
    # decimation that survived the outage would drop these: its next slot is at 0.3
    kept = kept_of(keeper, [(20.0, 9.0), (20.1, 9.1), (20.2, 9.2)])
    assert [k.t if k else None for k in kept] == pytest.approx([0.0, 0.1, 0.2])
    assert [k.restart if k else "skipped" for k in kept] == [FrameKeeper.OUTAGE, None, None]
    # a file's next run: media time from its pacing, the decimation slots kept
    files = FrameKeeper(10)
    files.start(0.04)
    assert [t for t in (i * 0.04 for i in range(5)) if files.keep(t)] == pytest.approx([0.0, 0.12])
    files.start(0.04)  # the next slot is still 0.2: fresh decimation would keep 0.18
    assert files.keep(0.18) is None and files.keep(0.2) is not None
