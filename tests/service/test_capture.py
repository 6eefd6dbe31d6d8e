from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import RtspServer, require_ffmpeg, require_rtsp
from timing import scaled

from model import Footage, FrameScores, recipe_model
from model.record import record
from service.capture import Backoff, CaptureWorker
from service.frames import ServedModel, StreamInfo, Window
from service.inference import InferenceWorker
from service.ring import RingBuffer
from service.settings import CameraSettings
from service.sources import SourceError, open_source
from service.urls import SourceSpec, resolve_source

pytestmark = pytest.mark.timeout(20)
K1 = 5  # k + 1


def frame(i: int) -> np.ndarray:
    return np.full((24, 32, 3), i % 256, np.uint8)


def fake_scores(n: int) -> FrameScores:
    z = np.zeros(n, np.float32)
    cells = np.zeros((n, 1), np.float32)
    return FrameScores(z, z, z, z, z, z, z, z, np.zeros((n, 4, 4), np.float32), cells, cells)


class SlowScorer:
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def preprocess(self, f: np.ndarray) -> np.ndarray:
        return f[:1, :1, 0].astype(np.float32)  # the frame's index (FakeSource) as a (1, 1) frame

    def score(self, windows: np.ndarray) -> FrameScores:
        time.sleep(self.delay)
        return fake_scores(len(windows))


def slow_model(delay: float) -> ServedModel:
    return ServedModel(SlowScorer(delay), "slow", None)  # type: ignore[arg-type]


SLOW = slow_model(0.0)


class FakeSource:
    """Plays `frames` (None = end of file) at `period`; `fail_at` raises, `stall_at` blocks like a frozen
    server until the read timeout."""

    def __init__(self, frames: int | None, period: float = 0.01, fail_at: int | None = None,
                 stall_at: int | None = None, stall_s: float = 0.0, fps: float | None = None) -> None:
        self.n, self.period, self.fail_at, self.stall_at, self.stall_s = frames, period, fail_at, stall_at, stall_s
        self.fps = fps
        self.i = 0
        self.closed = False

    def read(self) -> np.ndarray | None:
        if self.n is not None and self.i >= self.n:
            return None
        if self.i == self.fail_at:
            raise SourceError("stream read failed for rtsp://admin:hunter2@cam/x")
        if self.i == self.stall_at:
            time.sleep(self.stall_s)
        time.sleep(self.period)
        self.i += 1
        return frame(self.i)

    def close(self) -> None:
        self.closed = True


class RecordingBackoff(Backoff):
    """The worker's backoff, remembering the delays it handed out (what the worker was told to wait)."""

    def __init__(self) -> None:
        super().__init__(base_s=0.05, cap_s=0.2)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        self.delays.append(super().next_delay())
        return self.delays[-1]


def make_worker(cam: CameraSettings, factory: Callable[..., object], sink: object,
                spec: SourceSpec | None = None, model: ServedModel = SLOW,
                backoff: Backoff | None = None) -> CaptureWorker:
    spec = spec or SourceSpec("network", cam.url)
    return CaptureWorker(cam, spec, RingBuffer(cam.id, K1 - 1), model, sink,  # type: ignore[arg-type]
                         source_factory=factory, backoff=backoff or Backoff(base_s=0.05, cap_s=0.2))  # type: ignore[arg-type]


class PtsSource(FakeSource):
    """A network stream whose frames carry presentation times 1/25 s apart (plus `jump_s` from frame
    `jump_at` on); the first `burst` frames arrive at once, like the buffered second at an RTSP connect."""

    def __init__(self, burst: int = 0, jump_at: int | None = None, jump_s: float = 0.0) -> None:
        super().__init__(None, period=0.04)
        self.burst, self.jump_at, self.jump_s = burst, jump_at, jump_s
        self.pts_s: float | None = None

    def read(self) -> np.ndarray | None:
        self.period = 0.0 if self.i < self.burst else 0.04
        f = super().read()
        self.pts_s = self.i * 0.04 + (self.jump_s if self.jump_at is not None and self.i >= self.jump_at else 0.0)
        return f


def source_indices(window: Window) -> np.ndarray:
    return window.data[:, 0, 0].astype(int)  # make_worker's preprocess keeps one pixel: frame(i) is i % 256


class ListSink:
    def __init__(self) -> None:
        self.windows: list[Window] = []

    def submit(self, window: Window, *, block: bool, stop: threading.Event, catching_up: bool = False) -> None:
        self.windows.append(window)


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_open_failures_back_off_then_live_and_errors_are_redacted(no_thread_leak: None) -> None:
    attempts: list[float] = []

    def factory(spec: SourceSpec, cam: CameraSettings) -> FakeSource:
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise SourceError(f"cannot open {spec.target}")
        return FakeSource(None)

    cam = CameraSettings(id="c", url="rtsp://admin:hunter2@cam/x", fps=50)
    sink = ListSink()
    backoff = RecordingBackoff()
    w = make_worker(cam, factory, sink, backoff=backoff)
    w.start()
    wait_for(lambda: w.state == "live" and len(sink.windows) > 3)
    w.stop()
    assert w.reconnects == 3 and len(attempts) == 4
    # exponential: judged on the delays the worker was given, since a busy machine stretches the wall-clock
    # gaps by more than the doubling; each gap is at least its delay (the worker did wait)
    assert len(backoff.delays) == 3 and backoff.delays[2] > backoff.delays[1] * 1.3 > backoff.delays[0] * 1.3 ** 2
    assert all(gap >= delay - 0.005 for gap, delay in zip(np.diff(attempts), backoff.delays, strict=True))
    assert w.last_error is not None and "hunter2" not in w.last_error and "***@cam" in w.last_error
    assert [x.frame_index for x in sink.windows] == list(range(K1 - 1, K1 - 1 + len(sink.windows)))
    assert w.state == "stopped"


def test_read_error_reconnects_and_clears_history(no_thread_leak: None) -> None:
    sources: list[FakeSource] = []

    def factory(spec: SourceSpec, cam: CameraSettings) -> FakeSource:
        # Frames with presentation times: evenly spaced in content time however late a busy machine reads them,
        # so the only history reset is the reconnect's.
        src = PtsSource()
        src.fail_at = 8 if not sources else None
        sources.append(src)
        return src

    sink = ListSink()
    w = make_worker(CameraSettings(id="c", url="rtsp://cam/x", fps=100), factory, sink)
    w.start()
    wait_for(lambda: len(sources) == 2 and w.state == "live" and len(sink.windows) > 6)
    w.stop()
    assert w.reconnects == 1 and sources[0].closed
    idx = [x.frame_index for x in sink.windows]
    # 8 frames before the failure; the ring restarts, so the next window needs k+1 new frames.
    assert idx[:4] == [4, 5, 6, 7] and idx[4] == 8 + K1 - 1
    runs = [x.run for x in sink.windows]  # the windows after the reconnect are a run of their own
    assert len(set(runs[:4])) == 1 and len(set(runs[4:])) == 1 and runs[4] > runs[0]


def test_watchdog_marks_a_stalled_camera_and_recovers(no_thread_leak: None) -> None:
    src = FakeSource(None, stall_at=10, stall_s=scaled(1.0))  # still stalled when checked 0.5 s in, however busy
    w = make_worker(CameraSettings(id="c", url="rtsp://cam/x", stall_after_s=0.3), lambda s, c: src, ListSink())
    w.start()
    wait_for(lambda: src.i >= 10)
    time.sleep(0.5)
    assert w.diagnose(time.monotonic()) is None  # marks the stall; one more check to recover by itself
    assert w.state == "stalled" and w.stalls == 1
    assert "stalled" in (w.diagnose(time.monotonic()) or "")  # still stalled: the watchdog would restart it
    assert w.stalls == 1  # counted once per stall
    wait_for(lambda: w.state == "live")
    w.stop()


def test_file_ends_and_loop_restarts(no_thread_leak: None) -> None:
    spec = SourceSpec("file", "/x.mp4")
    w = make_worker(CameraSettings(id="c", url="/x.mp4", fps=100), lambda s, c: FakeSource(12, 0, fps=100),
                    ListSink(), spec)
    w.start()
    wait_for(lambda: w.state == "ended")
    assert w.frames_captured == 12 and w.reconnects == 0
    w.stop()
    opened: list[int] = []

    def factory(s: SourceSpec, c: CameraSettings) -> FakeSource:
        opened.append(1)
        return FakeSource(6, 0, fps=100)

    sink = ListSink()
    w = make_worker(CameraSettings(id="c", url="/x.mp4", fps=100, loop=True), factory, sink, spec)
    w.start()
    wait_for(lambda: w.frames_captured >= 20)
    w.stop()
    assert len(opened) >= 4 and w.reconnects == 0 and w.live
    # no window spans the loop's seam (last frames of the clip, then its first ones)
    assert sink.windows and all(np.all(np.diff(source_indices(x)) == 1) for x in sink.windows)
    assert w.history_resets >= 3


def test_file_camera_never_drops_frames(tmp_path: Path, write_video: Callable[..., Path],
                                        no_thread_leak: None) -> None:
    n = 30
    clip = write_video(tmp_path / "c.avi", [np.full((48, 64, 3), 8 * i, np.uint8) for i in range(n)], fps=50)
    scored: list[Window] = []
    inf = InferenceWorker(lambda b, s, ms: scored.extend(b), max_batch=4)
    cam = CameraSettings(id="f", url=str(clip), fps=50)
    w = make_worker(cam, open_source, inf,
                    resolve_source(cam.url, trusted=True, media_dir=None), slow_model(0.05))  # slower than 50 fps
    inf.register("f")
    inf.start()
    w.start()
    wait_for(lambda: w.state == "ended" and inf.pending() == 0)
    time.sleep(0.1)
    w.stop()
    inf.stop()
    assert w.frames_captured == n
    assert [x.frame_index for x in scored] == list(range(K1 - 1, n))
    assert inf.camera_stats("f")["frames_skipped"] == 0
    assert w.stream == StreamInfo(width=64, height=48, fps=50.0, codec="mjpg")  # what the file holds


def test_a_looped_file_rewinds_without_reopening(tmp_path: Path, write_video: Callable[..., Path],
                                                 no_thread_leak: None) -> None:
    """A looped file seeks back instead of reopening at each loop: opened once, every loop starts at the first
    frame again, and no window spans the seam."""
    n = 12
    clip = write_video(tmp_path / "l.avi", [np.full((48, 64, 3), 8 * i, np.uint8) for i in range(n)], fps=100)
    cam = CameraSettings(id="l", url=str(clip), fps=100, loop=True)
    opened: list[int] = []

    def factory(s: SourceSpec, c: CameraSettings) -> object:
        opened.append(1)
        return open_source(s, c)

    sink = ListSink()
    w = make_worker(cam, factory, sink, resolve_source(cam.url, trusted=True, media_dir=None))
    w.start()
    wait_for(lambda: w.frames_captured >= 3 * n + 2)
    w.stop()
    assert len(opened) == 1 and w.reconnects == 0
    assert w.history_resets >= 2
    seen = [np.round(x.data[:, 0, 0] / 8).astype(int) for x in sink.windows]  # frame i is 8 * i, give or take JPEG
    assert [int(x[0]) for x in seen].count(0) >= 3, seen  # each loop starts at the first frame again
    assert all(np.all(np.diff(x) == 1) for x in seen), seen
    # Each loop is a run of its own: the run changes exactly where a loop starts again.
    runs = [x.run for x in sink.windows]
    assert [runs[i] != runs[i - 1] for i in range(1, len(seen))] == [
        int(seen[i][0]) == 0 for i in range(1, len(seen))], (runs, seen)


def test_live_camera_drops_oldest_when_inference_is_behind(no_thread_leak: None) -> None:
    scored: list[Window] = []
    inf = InferenceWorker(lambda b, s, ms: scored.extend(b))
    w = make_worker(CameraSettings(id="l", url="rtsp://cam/x", fps=100), lambda s, c: FakeSource(None, 0.005), inf,
                    model=slow_model(0.1))
    inf.register("l")
    inf.start()
    w.start()
    time.sleep(1.0)
    w.stop()
    inf.stop()
    stats = inf.camera_stats("l")
    assert int(stats["frames_skipped"]) > 20  # type: ignore[call-overload]
    assert 3 <= len(scored) <= 15
    idx = [x.frame_index for x in scored]
    assert idx == sorted(idx) and idx[-1] - idx[0] > len(idx)  # the newest windows, with gaps


def test_live_stream_is_decimated_on_presentation_time_not_arrival(no_thread_leak: None) -> None:
    # 25 fps stream scored at 10 fps: kept frames are 2 or 3 source frames apart (80 or 120 ms of content),
    # through the burst of buffered frames at connect too. Arrival times would keep one frame of the burst.
    sink = ListSink()
    w = make_worker(CameraSettings(id="p", url="rtsp://cam/x", fps=10), lambda s, c: PtsSource(burst=25), sink)
    w.start()
    wait_for(lambda: len(sink.windows) >= 8)
    w.stop()
    steps = np.concatenate([np.diff(source_indices(x)) for x in sink.windows])
    assert set(steps.tolist()) <= {2, 3}, steps
    assert w.history_resets == 0


def test_windows_of_a_burst_carry_their_content_time(no_thread_leak: None) -> None:
    # The burst at connect arrives at once: its windows' content times (what alert durations are measured in)
    # are their frames' presentation times on the camera's timeline, 40 ms per source frame, not arrival times.
    sink = ListSink()
    calls = iter(range(10**6))
    cam = CameraSettings(id="p", url="rtsp://cam/x", fps=10)
    w = CaptureWorker(cam, SourceSpec("network", cam.url), RingBuffer(cam.id, K1 - 1), SLOW, sink,  # type: ignore[arg-type]
                      source_factory=lambda s, c: PtsSource(burst=25),  # type: ignore[arg-type,return-value]
                      clock=lambda: 1000.0 + 0.001 * next(calls))  # wall time: 1 ms per kept frame
    w.start()
    wait_for(lambda: len(sink.windows) >= 8)
    w.stop()
    newest = np.array([source_indices(x)[-1] for x in sink.windows])
    media = np.array([x.media_ts for x in sink.windows])
    assert np.allclose(np.diff(media), 0.04 * np.diff(newest), atol=1e-6), (np.diff(media), np.diff(newest))
    # The session starts at its first kept frame's wall time (1000.0; source frame 1, content time 0).
    assert media[0] - 0.04 * (newest[0] - 1) == pytest.approx(1000.0, abs=1e-6)
    assert sink.windows[0].ts == pytest.approx(1000.0 + 0.001 * (K1 - 1))  # the 5th kept frame's wall time


def test_gap_in_live_stream_restarts_the_history(no_thread_leak: None) -> None:
    # one second of the stream lost at frame 12: no window may span the gap; scoring resumes k+1 frames later
    sink = ListSink()
    w = make_worker(CameraSettings(id="g", url="rtsp://cam/x", fps=10),
                    lambda s, c: PtsSource(jump_at=12, jump_s=1.0), sink)
    w.start()
    wait_for(lambda: any(source_indices(x)[0] > 12 for x in sink.windows), timeout=15)
    w.stop()
    assert w.history_resets == 1
    for x in sink.windows:
        assert set(np.diff(source_indices(x)).tolist()) <= {2, 3}, source_indices(x)
    before = {x.run for x in sink.windows if source_indices(x)[-1] <= 12}
    after = {x.run for x in sink.windows if source_indices(x)[0] > 12}
    assert len(before) == 1 and len(after) == 1 and before != after  # the windows after the gap: a new run


class FrozenSource(PtsSource):
    """A 25 fps stream whose server freezes after `live` frames: from then on each read blocks for the read
    timeout and still returns a frame, 40 ms of content on (the decoder's buffered ones, as OpenCV's FFmpeg
    backend does)."""

    def __init__(self, live: int, read_timeout_s: float) -> None:
        super().__init__()
        self.live, self.read_timeout_s = live, read_timeout_s
        self.frozen_at: float | None = None  # monotonic time the last live frame was returned
        self.stale = 0

    def read(self) -> np.ndarray | None:
        if self.i >= self.live:
            if self.frozen_at is None:
                self.frozen_at = time.monotonic()
            time.sleep(self.read_timeout_s)
            self.stale += 1
        return super().read()


def test_stale_frames_of_a_frozen_stream_do_not_hide_the_stall(no_thread_leak: None) -> None:
    """Every frame is kept (25 fps scored at 25) and cuts a window, stale ones too: handing a window to
    inference must not make the camera's frame age young again, or a frozen camera is found stalled one read
    timeout late (or never, while its reads keep returning stale frames)."""
    src = FrozenSource(live=20, read_timeout_s=0.6)
    sink = ListSink()
    w = make_worker(CameraSettings(id="f", url="rtsp://cam/x", fps=25, stall_after_s=0.5), lambda s, c: src, sink)
    w.start()
    wait_for(lambda: src.stale >= 1 and len(sink.windows) >= 20 - K1 + 2)  # the first stale frame's window
    time.sleep(0.1)  # capture is blocked in the next stale read now
    assert src.frozen_at is not None
    now = time.monotonic()
    age = w.frame_age(now)
    assert age is not None and age > now - src.frozen_at - 0.2, (age, now - src.frozen_at)
    assert w.diagnose(now) is None and w.state == "stalled" and w.stalls == 1
    w.stop()


@pytest.mark.parametrize("stride", [1, 3])
def test_ring_cuts_the_windows_a_clip_gets(stride: int) -> None:
    """One window rule for a live stream and an uploaded clip: the ring's windows equal windows_from_frames'."""
    from dataclasses import replace

    from model import windows_from_frames
    from model.config import get_preset

    cfg = replace(get_preset("lite"), frame_stride=stride)
    pre = [np.full((1, 2, 2), i, np.float32) for i in range(3 * cfg.history)]
    ring = RingBuffer("c", cfg.num_frames, cfg.frame_stride)
    assert ring.size == cfg.history + 1
    live = [ring.push(p, frame(i), i, 0.0, SLOW, media_ts=0.0) for i, p in enumerate(pre)]
    clip = [w for _, w in windows_from_frames(pre, cfg)]
    assert [w is None for w in live] == [w is None for w in clip]
    assert sum(w is not None for w in live) == len(pre) - cfg.num_frames
    for w, c in zip(live, clip, strict=True):
        if w is not None:
            assert c is not None and np.array_equal(w.data, c)


GREY_STEP = 6  # grey level step between the frames of grey_level_clip


def grey_level_clip(tmp_path: Path, native: int, n: int = 40, bframes: int = 0) -> Path:
    """tmp_path/media/clip.mp4: n frames at `native` fps, frame i all grey level GREY_STEP * i (which frames a
    window or a recording holds is visible), H.264 with a key frame every 10 and `bframes` B-frames (frames
    decoded out of presentation order, as many cameras' main-profile streams have)."""
    require_ffmpeg()
    import cv2

    for i in range(n):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((48, 64, 3), GREY_STEP * i, np.uint8))
    media = tmp_path / "media"
    media.mkdir()
    clip = media / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", str(native), "-i", str(tmp_path / "%03d.png"),
                    "-c:v", "libx264", "-x264-params", f"keyint=10:bframes={bframes}", "-pix_fmt", "yuv420p",
                    str(clip)], check=True)
    return clip


def grey_index(frame: np.ndarray) -> int:
    return round(float(frame.mean()) / GREY_STEP)


@pytest.mark.parametrize("native, bframes", [(10, 0), (25, 0), (25, 2)])
def test_rtsp_stream_gets_the_windows_of_its_file_from_the_first_on(tmp_path: Path, native: int, bframes: int,
                                                                    no_thread_leak: None) -> None:
    """A clip served by a real RTSP server and the same file as a camera keep the same frames at 10 fps and so
    cut the same windows, the first ones included. Over RTSP, FFmpeg gives a session's first frame no
    timestamp: timed as 0, the second frame would be a duplicate of it and decimation would drop it. With
    B-frames the stream's first presentation time is not its first decoded frame's: read relative to the
    stream's start, the first frames' times would be negative and the camera would time them on arrival,
    keeping other frames of the burst delivered at connect."""
    require_rtsp()
    clip = grey_level_clip(tmp_path, native, bframes=bframes)
    server = RtspServer(files=clip.parent).start()
    file_sink, live_sink = ListSink(), ListSink()
    file_cam = CameraSettings(id="f", url=str(clip), fps=10)
    workers = [make_worker(file_cam, open_source, file_sink,
                           resolve_source(file_cam.url, trusted=True, media_dir=None)),
               make_worker(CameraSettings(id="l", url=server.url_of("clip"), fps=10), open_source, live_sink)]
    m = 8  # windows compared: the stream ends (and the camera reconnects) after 12 (25 fps) or 36 (10 fps)
    try:
        for w in workers:
            w.start()
        wait_for(lambda: len(file_sink.windows) >= m and len(live_sink.windows) >= m)
    finally:
        for w in workers:
            w.stop()
        server.kill()
    live = [source_indices(w).tolist() for w in live_sink.windows[:m]]
    assert live == [source_indices(w).tolist() for w in file_sink.windows[:m]]
    assert [w.frame_index for w in live_sink.windows[:m]] == list(range(K1 - 1, K1 - 1 + m))


def test_ffp_learn_records_the_frames_a_camera_keeps_of_an_rtsp_stream(tmp_path: Path, no_thread_leak: None) -> None:
    """`ffp learn URL` (model.record) keeps the frames a camera on the same stream keeps, the connect burst
    included (the frames FFmpeg buffered while it probed the stream, read at once): both time them by their
    presentation time and decimate them alike, so the footage is the same whichever records it."""
    require_rtsp()
    clip = grey_level_clip(tmp_path, native=25)
    server = RtspServer(files=clip.parent).start()
    tapped: list[int] = []
    worker = make_worker(CameraSettings(id="l", url=server.url_of("clip"), fps=10), open_source, ListSink())
    worker.tap = lambda frame, ts, fresh: tapped.append(grey_index(frame))
    m = 12  # frames compared, within one playback of the clip (16 frames kept at 10 fps)
    try:
        worker.start()
        wait_for(lambda: len(tapped) >= m)
        worker.stop()
        record(server.url_of("clip"), tmp_path / "footage", recipe_model("camera-lite"), fps=10,
               footage_minutes=m / 600, max_bytes=10**8)
    finally:
        worker.stop()
        server.kill()
    recorded = [grey_index(f) for segment in Footage(tmp_path / "footage").segments() for f in segment]
    assert tapped[:m] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]  # a 25 fps file at 10 fps
    assert recorded == tapped[:m]


@pytest.mark.parametrize("reported", [50, 1000])
def test_ffp_learn_records_the_frames_a_file_camera_keeps(tmp_path: Path, write_video: Callable[..., Path],
                                                          reported: int, no_thread_leak: None) -> None:
    """`ffp learn FILE` (model.record) keeps the frames a camera on the same file keeps: both time a file's frames
    by their count at its native rate (model.clock.native_fps), a rate no camera has (1000 fps) included."""
    n = 30
    clip = write_video(tmp_path / "clip.avi", [np.full((48, 64, 3), GREY_STEP * i, np.uint8) for i in range(n)],
                       fps=reported)
    cam = CameraSettings(id="f", url=str(clip), fps=10)
    worker = make_worker(cam, open_source, ListSink(), resolve_source(cam.url, trusted=True, media_dir=None))
    tapped: list[int] = []
    worker.tap = lambda frame, ts, fresh: tapped.append(grey_index(frame))
    try:
        worker.start()
        wait_for(lambda: worker.state == "ended")
    finally:
        worker.stop()
    record(str(clip), tmp_path / "footage", recipe_model("camera-lite"), fps=10, footage_minutes=1.0,
           max_bytes=10**8)
    recorded = [grey_index(f) for segment in Footage(tmp_path / "footage").segments() for f in segment]
    assert tapped == ([0, 5, 10, 15, 20, 25] if reported == 50 else [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28])
    assert recorded == tapped
