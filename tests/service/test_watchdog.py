"""The watchdog with real parts where cheap: restarts of a crashed or frozen capture thread and of a stuck or dead
inference thread, the restart budget ending in `failed`, a frozen GStreamer RTSP server (SIGSTOP) and an HTTP
source served by Python's http.server."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_server import write_clip
from timing import scaled

from model import FrameScores, Predictor
from service.capture import Backoff, CaptureWorker
from service.frames import ScoreMessage, ServedModel, Window
from service.inference import InferenceWorker
from service.pipeline import Pipeline
from service.ring import RingBuffer
from service.settings import CameraSettings, Settings, WatchdogSettings
from service.store import EventStore
from service.supervised import SupervisedThread
from service.urls import SourceSpec
from service.watchdog import RestartBudget, Watchdog

SECRET_URL = "rtsp://admin:hunter2@cam.local/x"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class CrashingSource:
    """100 fps of good frames, except that the first frame of the first `bad_sessions` sessions is a float
    image: preprocess refuses it, which kills the capture thread (a bug, not a source fault)."""

    def __init__(self, session: int, bad_sessions: float) -> None:
        self.bad = session < bad_sessions
        self.fps: float | None = None
        self.i = 0

    def read(self) -> np.ndarray | None:
        time.sleep(0.01)
        self.i += 1
        if self.bad:
            return np.zeros((48, 64, 3), np.float32)
        return np.full((48, 64, 3), self.i % 256, np.uint8)

    def close(self) -> None:
        pass


def crashing_factory(bad_sessions: float) -> tuple[Callable[[SourceSpec, CameraSettings], CrashingSource], list[int]]:
    opened: list[int] = []

    def factory(spec: SourceSpec, cam: CameraSettings) -> CrashingSource:
        opened.append(1)
        return CrashingSource(len(opened) - 1, bad_sessions)
    return factory, opened


def make_pipeline(tmp_path: Path, predictor: Predictor, cams: list[CameraSettings], interval_s: float,
                  **kw: object) -> tuple[Pipeline, EventStore]:
    settings = Settings(data_dir=tmp_path, cameras=cams, watchdog=WatchdogSettings(interval_s=interval_s))
    store = EventStore.open(tmp_path)
    return Pipeline(settings, predictor, store, **kw), store  # type: ignore[arg-type]


class Collector:
    def __init__(self) -> None:
        self.scores: list[ScoreMessage] = []
        self.lock = threading.Lock()

    def __call__(self, m: object) -> None:
        if isinstance(m, ScoreMessage):
            with self.lock:
                self.scores.append(m)

    def count(self) -> int:
        with self.lock:
            return len(self.scores)


def test_restart_budget_is_a_sliding_window() -> None:
    now = [0.0]
    budget = RestartBudget(5, 60.0, clock=lambda: now[0])
    for t in range(5):
        now[0] = t * 10.0
        assert budget.take()
    now[0] = 45.0
    assert not budget.take()  # 5 restarts within the last 60 s (at 0, 10, 20, 30, 40)
    now[0] = 60.0
    assert budget.take()  # the one at t=0 left the window
    assert not budget.take()


@pytest.mark.timeout(20)
def test_crashed_capture_thread_is_restarted_and_frames_flow_again(
        tmp_path: Path, make_predictor: Callable[..., Predictor], no_thread_leak: None) -> None:
    factory, opened = crashing_factory(bad_sessions=2)
    pipe, store = make_pipeline(tmp_path, make_predictor(None), [CameraSettings(id="cam", url=SECRET_URL, fps=10)],
                                interval_s=0.05, source_factory=factory)
    got = Collector()
    pipe.add_listener(got)
    pipe.start()
    try:
        wait_for(lambda: got.count() >= 3, what="scores after the restarts")
        st = pipe.get_camera("cam")
        stats = pipe.stats()
    finally:
        pipe.stop()
        store.close()
    assert len(opened) == 3 and st.restarts == 2 and st.reconnects == 0
    assert st.state == "live" and st.frames_scored >= 3
    assert st.last_error is not None and "internal error: ValueError" in st.last_error
    assert stats["cameras"]["cam"]["restarts"] == 2  # type: ignore[index]
    assert stats["inference"]["restarts"] == 0 and stats["inference"]["state"] == "running"  # type: ignore[index]


@pytest.mark.timeout(20)
def test_capture_crashing_forever_fails_after_5_restarts(
        tmp_path: Path, make_predictor: Callable[..., Predictor], no_thread_leak: None) -> None:
    factory, opened = crashing_factory(bad_sessions=float("inf"))
    pipe, store = make_pipeline(tmp_path, make_predictor(None), [CameraSettings(id="cam", url=SECRET_URL, fps=10)],
                                interval_s=0.05, source_factory=factory)
    pipe.start()
    try:
        wait_for(lambda: pipe.get_camera("cam").state == "failed", what="failed")
        time.sleep(0.3)  # several more checks: a failed camera is left alone
        st = pipe.get_camera("cam")
        stats = pipe.stats()
    finally:
        pipe.stop()
        store.close()
    assert st.state == "failed" and st.restarts == 5 and len(opened) == 6
    assert st.last_error is not None and st.last_error.startswith("failed: capture thread died")
    assert "gave up after 5 restarts within 60 s" in st.last_error and "ValueError" in st.last_error
    assert stats["cameras"]["cam"]["state"] == "failed"  # type: ignore[index]
    assert "hunter2" not in str(stats) and "hunter2" not in str(pipe.list_cameras())


class PreprocessOnly:
    def __init__(self, preprocess: Callable[[np.ndarray], np.ndarray]) -> None:
        self.preprocess = preprocess


@pytest.mark.timeout(10)
def test_failed_camera_error_is_redacted(no_thread_leak: None) -> None:
    def preprocess(frame: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"decoder state of {SECRET_URL} is corrupt")

    cam = CameraSettings(id="c", url=SECRET_URL)
    model = ServedModel(PreprocessOnly(preprocess), "p", None)  # type: ignore[arg-type]
    w = CaptureWorker(cam, SourceSpec("network", SECRET_URL), RingBuffer("c", 4), model,
                      None, source_factory=lambda s, c: CrashingSource(0, 0),  # type: ignore[arg-type]
                      backoff=Backoff(base_s=0.05))
    dog = Watchdog(lambda: [w], interval_s=0.02, max_restarts=1)
    w.start()
    dog.start()
    try:
        wait_for(lambda: w.state == "failed", what="failed")
    finally:
        dog.stop()
        w.stop()
    assert w.restarts == 1 and w.last_error is not None
    assert "hunter2" not in w.last_error and "***@cam.local" in w.last_error
    assert "1 restarts within 60 s" in w.last_error


def fake_scores(n: int) -> FrameScores:
    z = np.zeros(n, np.float32)
    cells = np.zeros((n, 1), np.float32)
    return FrameScores(z, z, z, z, z, z, z, z, np.zeros((n, 4, 4), np.float32), cells, cells)


def window(i: int, scorer: FlakyScorer) -> Window:
    return Window("c", i, float(i), np.zeros((5, 1, 2, 2), np.float32), np.zeros((2, 2, 3), np.uint8),
                  ServedModel(scorer, "flaky", None), media_ts=float(i))  # type: ignore[arg-type]


class FlakyScorer:
    """Scores at once, except the first call: it raises `fatal`, or hangs until released when `hang`."""

    def __init__(self, fatal: BaseException | None = None, hang: bool = False) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.fatal, self.hang = fatal, hang

    def score(self, windows: np.ndarray) -> FrameScores:
        self.calls += 1
        if self.calls == 1 and self.fatal is not None:
            raise self.fatal
        if self.hang:
            self.release.wait(10)
        return fake_scores(len(windows))


@contextmanager
def supervised_inference(scorer: FlakyScorer, on_scores: Callable[..., None],
                         max_restarts: int = 5) -> Iterator[InferenceWorker]:
    inf = InferenceWorker(on_scores, max_wait_ms=0, stuck_after_s=0.3)
    dog = Watchdog(lambda: [inf], interval_s=0.05, max_restarts=max_restarts)
    inf.register("c")
    inf.start()
    dog.start()
    try:
        yield inf
    finally:
        dog.stop()
        scorer.release.set()  # abandoned threads return; their batches are dropped and stop() joins them
        inf.stop()


class Hanging(SupervisedThread):
    """A worker whose every thread blocks until released, deaf to its cancel (a read on a frozen server); the
    first thread leaves last."""

    def __init__(self) -> None:
        super().__init__("toy", kind="toy", thread_name="toy")
        self.release = threading.Event()
        self.first: threading.Thread | None = None
        self.stopped = 0

    def start(self) -> None:
        with self._lock:
            self._spawn()
            self.first = self._thread

    def _run(self, cancel: threading.Event) -> None:
        self.release.wait(10)
        if threading.current_thread() is self.first:
            time.sleep(0.5)

    def _active(self) -> bool:
        return True

    def _health(self, now_mono: float) -> str | None:
        return "hung"

    def _on_stopped(self) -> None:
        self.stopped += 1


@pytest.mark.timeout(10)
def test_supervised_thread_abandons_a_hung_thread_and_stop_joins_every_thread(no_thread_leak: None) -> None:
    w = Hanging()
    w.start()
    assert w.diagnose(time.monotonic()) == "hung"
    w.restart("hung")
    threads = [t for t in threading.enumerate() if t.name == "toy"]
    assert w.restarts == 1 and len(threads) == 2 and all(t.is_alive() for t in threads)
    releaser = threading.Timer(0.2, w.release.set)
    releaser.start()
    w.stop(timeout=5)  # returns only once the abandoned thread has left too
    releaser.join()
    assert not any(t.is_alive() for t in threads)
    assert w.stopped == 1 and w.diagnose(time.monotonic()) is None


@pytest.mark.timeout(10)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit, on purpose
@pytest.mark.parametrize("fault", ["stuck", "died"])
def test_inference_is_restarted_when_stuck_or_dead(fault: str, no_thread_leak: None) -> None:
    # stuck: the first batch's score handling hangs (a blocked listener). died: the scorer raises SystemExit
    # (a library calling sys.exit), which ends the thread silently.
    scorer = FlakyScorer(SystemExit(3) if fault == "died" else None)
    scored: list[Window] = []

    def on_scores(batch: list[Window], scores: FrameScores, ms: float) -> None:
        if fault == "stuck" and batch[0].frame_index == 0:
            scorer.release.wait(10)
        scored.extend(batch)

    stop = threading.Event()
    with supervised_inference(scorer, on_scores) as inf:
        inf.submit(window(0, scorer), block=False, stop=stop)
        wait_for(lambda: inf.restarts == 1, what="inference restart")
        inf.submit(window(1, scorer), block=False, stop=stop)
        wait_for(lambda: [w.frame_index for w in scored] == [1], what="a batch scored by the new thread")
        stats = inf.stats()
    assert stats["state"] == "running" and stats["restarts"] == 1
    assert ("stuck: one batch running" if fault == "stuck" else "inference thread died") in str(stats["last_error"])


@pytest.mark.timeout(10)
def test_hung_model_ends_inference_failed(no_thread_leak: None) -> None:
    # A thread cannot be killed: the replacement waits for the model lock the hung thread holds, is found
    # stuck too, and the budget runs out.
    scorer = FlakyScorer(hang=True)
    scored: list[Window] = []
    with supervised_inference(scorer, lambda b, s, ms: scored.extend(b), max_restarts=2) as inf:
        def feed_until_failed() -> bool:  # a live camera keeps offering windows
            inf.submit(window(0, scorer), block=False, stop=threading.Event())
            return inf.state == "failed"

        wait_for(feed_until_failed, what="inference failed")
        stats, calls = inf.stats(), scorer.calls
    assert stats["restarts"] == 2 and calls == 1  # the replacements never got the model
    assert scored == []  # released after failing: the abandoned threads drop their batches
    assert str(stats["last_error"]).startswith("failed: stuck: one batch running")
    assert "gave up after 2 restarts within 60 s" in str(stats["last_error"])


@contextmanager
def live_rtsp_camera(tmp_path: Path, predictor: Predictor, url: str, **camera: Any) -> Iterator[Pipeline]:
    """A pipeline of one camera "cam" on `url` (5 fps, watchdog every 0.2 s), started and scoring; stopped after
    (which joins abandoned threads too, for no_thread_leak)."""
    cam = CameraSettings(id="cam", url=url, fps=5, open_timeout_s=2, **camera)
    pipe, store = make_pipeline(tmp_path, predictor, [cam], interval_s=0.2)
    pipe.start()
    try:
        wait_for(lambda: pipe.get_camera("cam").state == "live" and pipe.get_camera("cam").frames_scored > 0,
                 what="live")
        yield pipe
    finally:
        pipe.stop()
        store.close()


@pytest.mark.timeout(20, func_only=True)  # the session's predictor calibration may run in setup
def test_frozen_rtsp_server_stalls_reconnects_and_recovers(tmp_path: Path, predictor: Predictor, rtsp_server,  # type: ignore[no-untyped-def]
                                                         no_thread_leak: None) -> None:
    # The watchdog restart (stall 0.8 s + one 0.2 s check) comes before the read timeout (2 s).
    with live_rtsp_camera(tmp_path, predictor, rtsp_server.url, read_timeout_s=2, stall_after_s=0.8) as pipe:
        with rtsp_server.frozen():
            wait_for(lambda: pipe.get_camera("cam").stalls >= 1, timeout=5, what="stalled")
            wait_for(lambda: pipe.get_camera("cam").state == "reconnecting" and pipe.get_camera("cam").restarts >= 1,
                     timeout=5, what="restarted, reconnecting")
            time.sleep(0.5)  # still frozen: the reconnect attempts time out
            assert pipe.get_camera("cam").state == "reconnecting"
        wait_for(lambda: pipe.get_camera("cam").state == "live", timeout=10, what="live again")
        before = pipe.get_camera("cam").frames_scored
        wait_for(lambda: pipe.get_camera("cam").frames_scored > before, timeout=5, what="scores after the freeze")
        st = pipe.get_camera("cam")
    assert st.state == "live" and st.restarts >= 1 and st.stalls >= 1


@pytest.mark.timeout(30, func_only=True)
def test_frozen_rtsp_server_ends_the_read_at_its_timeout_and_the_camera_recovers(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                                 predictor: Predictor, rtsp_server,
                                                                                 no_thread_leak: None) -> None:
    # stall_after_s above the read timeout: the read itself gives up after read_timeout_s (the frames the
    # decoder had buffered do not keep it waiting, nor the camera live), the camera reconnects, and it is live
    # again once the server resumes.
    with live_rtsp_camera(tmp_path, predictor, rtsp_server.url, read_timeout_s=1.5, stall_after_s=5.0) as pipe:
        reconnects = pipe.get_camera("cam").reconnects
        with rtsp_server.frozen():
            wait_for(lambda: pipe.get_camera("cam").reconnects > reconnects, timeout=8, what="reconnecting")
            assert pipe.get_camera("cam").state != "live"
        wait_for(lambda: pipe.get_camera("cam").state == "live", timeout=10, what="live again")
        before = pipe.get_camera("cam").frames_scored
        wait_for(lambda: pipe.get_camera("cam").frames_scored > before, timeout=5, what="scores after the freeze")
        st = pipe.get_camera("cam")
    assert st.state == "live" and st.reconnects > reconnects


class _ThrottledServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads


@contextmanager
def serve_clip(path: Path, seconds: float) -> Iterator[str]:
    """Serve one file over HTTP on 127.0.0.1, sent over `seconds` like a camera streaming in real time."""
    data = path.read_bytes()
    closing = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            step = max(1, int(len(data) / (seconds * 10)))
            try:
                for i in range(0, len(data), step):
                    if closing.is_set():
                        return
                    self.wfile.write(data[i:i + step])
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = _ThrottledServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="http-clip", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    finally:
        closing.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.timeout(20)
def test_http_source_scores(tmp_path: Path, make_predictor: Callable[..., Predictor], no_thread_leak: None) -> None:
    clip = write_clip(tmp_path / "cam.avi", "." * 150)  # mp4v in AVI (readable while it streams), 6 s at 25 fps
    pipe, store = make_pipeline(tmp_path, make_predictor(None), [], interval_s=0.2)
    got = Collector()
    pipe.add_listener(got)
    pipe.start()
    try:
        with serve_clip(clip, seconds=6.0) as url:
            try:
                pipe.add_camera(CameraSettings(id="web", url=url, fps=5, open_timeout_s=5, read_timeout_s=3))
                wait_for(lambda: got.count() >= 3, timeout=15, what="scores from the HTTP camera")
                st = pipe.get_camera("web")
            finally:
                pipe.stop()
    finally:
        store.close()
    assert st.state == "live" and st.frames_scored >= 3 and st.restarts == 0
    assert {m.camera_id for m in got.scores} == {"web"}
