"""Shared service fixtures: a real RTSP camera (GStreamer, run by Debian's python3) and an untrained predictor
calibrated on that camera's normal picture.

The untrained generator's output layer is zeroed, so it predicts exactly the last frame: the anomaly score
becomes frame-to-frame change. The camera's normal picture (a slowly turning pinwheel) changes a little; the
injected anomaly (white noise, `snow`) changes everything, a z score far above any alert threshold.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from timing import TIME_SCALE, scaled
from torch import nn

from model import Calibration, LiveStream, Predictor, windows_from_frames
from model.config import ScoreConfig, get_preset
from model.unet import Generator
from service.frames import EventMessage, ScoreMessage

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # the gi bindings live in Debian's interpreter, not in the venv
NORMAL_PATTERN = "pinwheel"
TEST_FPS = 5.0  # scoring rate of the test cameras; calibration uses the same decimation
# What the RTSP test server needs from Debian (its python3 with the gi bindings, the RTSP server library, x264).
GSTREAMER_APT = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                 "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav")
_GST_PROBE = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
              "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
              "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay') if Gst.ElementFactory.find(e) is None]; "
              "print(' '.join(missing))")


@functools.cache
def gstreamer_missing() -> str | None:
    """Why the RTSP test server cannot run here (None: it can). Probed once per session."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} is missing"
    r = subprocess.run([SYSTEM_PYTHON, "-c", _GST_PROBE], capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return lines[-1] if lines else f"the GStreamer probe exited with {r.returncode}"
    if r.stdout.strip():
        return f"GStreamer elements missing: {r.stdout.strip()}"
    return None


def require_rtsp() -> None:
    """Skip an RTSP test, with what to install, where GStreamer's RTSP server is missing; fail under CI (.ci/run
    installs it, so a skip there would hide a broken install)."""
    why = gstreamer_missing()
    if why is None:
        return
    reason = f"RTSP test needs GStreamer's RTSP server ({why}): apt-get install {GSTREAMER_APT} (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_ffmpeg() -> None:
    """Skip a test that encodes its clip with the ffmpeg command where it is missing; fail under CI (.ci/run
    installs it)."""
    if shutil.which("ffmpeg") is not None:
        return
    reason = "this test encodes its clip with ffmpeg: apt-get install ffmpeg (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class RtspServer:
    """A GStreamer RTSP server subprocess: `switch('snow')` injects an anomaly, `kill()` and `restart()`
    simulate an outage on the same port. With `files`, it also serves each files/NAME.mp4 at `url_of(NAME)`."""

    def __init__(self, pattern: str = NORMAL_PATTERN, fps: int = 25, files: Path | None = None) -> None:
        self.pattern, self.fps, self.files = pattern, fps, files
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return self.url_of("cam")

    def url_of(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> RtspServer:
        deadline = time.monotonic() + 10
        while True:  # the port of a killed server may be in TIME_WAIT for a moment
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--pattern", self.pattern,
                 "--fps", str(self.fps), *(["--files", str(self.files)] if self.files else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.startswith("PORT "):
                self.port = int(line.split()[1])
                return self
            self.proc.wait(5)
            self.kill()  # closes its pipes
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start: {line!r}")
            time.sleep(0.3)

    def switch(self, pattern: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(pattern + "\n")
        self.proc.stdin.flush()
        self.pattern = pattern

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):  # no ResourceWarning for unclosed pipes
            if pipe is not None:
                pipe.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server process stopped (SIGSTOP) inside the block: its sockets stay open, nothing is sent;
        continued (SIGCONT) after, on failure too."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Scale each service test's own timeout mark by FFP_TEST_TIME_SCALE (timing.py): a marked timeout bounds a
    hang, it is not a measurement."""
    if TIME_SCALE <= 1:
        return
    here = Path(__file__).parent
    for item in items:
        mark = item.get_closest_marker("timeout")
        if mark is None or not mark.args or here not in Path(str(item.path)).parents:
            continue
        item.add_marker(pytest.mark.timeout(scaled(float(mark.args[0])), *mark.args[1:], **mark.kwargs),
                        append=False)


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    require_rtsp()
    srv = RtspServer().start()
    try:
        yield srv
    finally:
        srv.kill()


def untrained_predictor(calibration: Calibration | None = None, precision: str = "bf16") -> Predictor:
    """A lite generator that predicts the last frame (output layer zeroed); no flow net, for speed."""
    torch.manual_seed(0)
    cfg = get_preset("lite", num_frames=4)
    gen = Generator(cfg).eval()
    out = [m for m in gen.modules() if isinstance(m, nn.Conv2d)][-1]
    nn.init.zeros_(out.weight)
    if out.bias is not None:
        nn.init.zeros_(out.bias)
    return Predictor(cfg, gen, None, calibration, ScoreConfig(), {}, torch.device("cpu"), precision)


def _read_frames(url: str, n: int, every: int) -> list[np.ndarray]:
    stream = LiveStream(url, open_timeout_s=5, read_timeout_s=5)  # as a camera reads it
    try:
        frames = [stream.read() for _ in range(n * every)][::every]
    finally:
        stream.close()
    return frames


@pytest.fixture(scope="session")
def predictor() -> Predictor:
    """Untrained predictor calibrated on the test camera's normal picture, at the test cameras' rate."""
    require_rtsp()
    srv = RtspServer().start()  # the same 25 fps stream as the test cameras (the pattern's motion depends on it)
    try:
        frames = _read_frames(srv.url, 30, int(25 / TEST_FPS))
    finally:
        srv.kill()
    p = untrained_predictor()
    pre = [p.preprocess(f) for f in frames]
    windows = np.stack([w for _, w in windows_from_frames(pre, p.config) if w is not None])
    metrics = p.score(windows).metrics()
    # Decoding jitter makes the normal spread narrow; widen it so normal frames never look anomalous.
    cal = Calibration.from_scores(metrics, source="tests: rtsp pinwheel")
    std = dict(cal.std, anomaly=max(cal.std["anomaly"], 4.0))
    return p.with_calibration(Calibration(cal.mean, std, cal.quantiles, cal.frames, cal.source))


@pytest.fixture(autouse=True)
def torch_threads_restored() -> Iterator[None]:
    """A service built in a test sets torch's thread count for the process (as it does in production): the
    tests after it get tests/conftest.py's count back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fails the test if it leaves threads running (every worker must be joined by stop())."""
    import threading

    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + scaled(5)
    while True:
        extra = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"leaked threads: {[t.name for t in extra]}"


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write frames as an MJPG .avi (OpenCV's bundled FFmpeg cannot write H.264)."""
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    return path



@pytest.fixture
def serve_service(predictor: Predictor) -> Iterator[Callable[..., Any]]:
    """serve_service(data_dir, **settings) -> (LiveServer, httpx.Client, Service), closed at the end."""
    from live_server import serve

    from service.api import create_app
    from service.settings import load_settings
    from service.wiring import build_service

    with contextlib.ExitStack() as stack:
        def start(data_dir: Path, **settings: Any) -> Any:
            service = build_service(load_settings(None, data_dir=data_dir, **settings), predictor=predictor)
            srv = stack.enter_context(serve(create_app(service)))
            client = stack.enter_context(httpx.Client(base_url=srv.url, timeout=20))
            return srv, client, service
        yield start


@pytest.fixture
def write_video() -> Callable[[Path, list[np.ndarray], float], Path]:
    return _write_video


@pytest.fixture(scope="session")
def make_predictor() -> Callable[[Calibration | None], Predictor]:
    """untrained_predictor as a fixture: tests build one calibrated on their own footage."""
    return untrained_predictor


class Collector:
    """A pipeline listener keeping its score and event messages, for tests to read from another thread."""

    def __init__(self) -> None:
        self.msgs: list[ScoreMessage | EventMessage] = []
        self.lock = threading.Lock()

    def __call__(self, m: ScoreMessage | EventMessage) -> None:
        with self.lock:
            self.msgs.append(m)

    def scores(self) -> list[ScoreMessage]:
        with self.lock:
            return [m for m in self.msgs if isinstance(m, ScoreMessage)]

    def events(self) -> list[EventMessage]:
        with self.lock:
            return [m for m in self.msgs if isinstance(m, EventMessage)]


@pytest.fixture
def now() -> list[float]:
    """The clock of `made`'s learning hosts: tests move it."""
    return [time.time()]


@pytest.fixture
def made(tmp_path: Path, now: list[float]) -> Iterator[Callable[..., Any]]:
    """made(*camera ids, **learning settings) -> (Host, Learning): learning against a stand-in for the pipeline
    (learning_host.Host) in tmp_path/data, on the `now` clock; stopped at the end."""
    from learning_host import Host, settings

    from service.learning import Learning

    made: list[Learning] = []

    def make(*ids: str, **over: Any) -> tuple[Host, Learning]:
        host = Host(tmp_path / "data", *(ids or ("cam",)))
        learning = Learning(settings(**over), tmp_path / "data", host, device="cpu",  # type: ignore[arg-type]
                            clock=lambda: now[0])
        made.append(learning)
        return host, learning
    yield make
    for learning in made:
        learning.stop()
