"""Frame sources: a network camera that hangs while connecting holds up no other source, and its errors are
redacted."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import RtspServer, require_ffmpeg

from service.settings import CameraSettings
from service.sources import SourceError, open_source
from service.urls import resolve_source

DEMO = Path(__file__).resolve().parents[2] / "service" / "demo" / "ped2_demo.mp4"


@contextmanager
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a camera frozen before its first
    reply); the event is set once a client connected. Leaving the block closes every connection."""
    srv = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    connected = threading.Event()

    def accept() -> None:
        try:
            while True:
                accepted.append(srv.accept()[0])
                connected.set()
        except OSError:  # the listening socket closed
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], connected
    finally:
        srv.close()
        for conn in accepted:
            conn.close()
        thread.join(5)


def open_in_thread(url: str, open_timeout_s: float) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []
    cam = CameraSettings(id="hung", url=url, open_timeout_s=open_timeout_s)

    def run() -> None:
        try:
            open_source(resolve_source(url, trusted=True, media_dir=None), cam).close()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def read_one(url: str, trusted: bool = True) -> np.ndarray | None:
    cam = CameraSettings(id="other", url=url)
    src = open_source(resolve_source(url, trusted=trusted, media_dir=None), cam)
    try:
        return src.read()
    finally:
        src.close()


@pytest.mark.timeout(60)
def test_a_camera_hanging_in_its_open_holds_up_no_other_source(tmp_path: Path, rtsp_server: RtspServer,
                                                               write_video: Callable[..., Path]) -> None:
    """While one camera's connect hangs (its server accepted and says nothing) for up to its open timeout, a
    file (a file camera, an uploaded clip) and another network camera open and deliver frames: the connect
    holds no lock that other sources take (OpenCV's FFmpeg backend opens every source under one)."""
    clip = write_video(tmp_path / "c.avi", [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)], fps=10)
    with silent_server() as (port, connected):
        hung, errors = open_in_thread(f"rtsp://admin:hunter2@127.0.0.1:{port}/cam", open_timeout_s=40)
        assert connected.wait(10), "the hung camera never connected"
        file_frame = read_one(str(clip))
        rtsp_frame = read_one(rtsp_server.url)
        still_hung = hung.is_alive()
    hung.join(20)  # the server closed the connection: the open fails now
    assert file_frame is not None and file_frame.shape == (48, 64, 3)
    assert rtsp_frame is not None and rtsp_frame.ndim == 3
    assert still_hung, "the hung camera's open had returned before the other sources were read"
    assert not hung.is_alive() and len(errors) == 1 and isinstance(errors[0], SourceError), errors
    assert "hunter2" not in str(errors[0]) and "cannot open" in str(errors[0]), errors[0]


def test_a_network_camera_says_what_it_sends(rtsp_server: RtspServer) -> None:
    cam = CameraSettings(id="cam", url=rtsp_server.url)
    src = open_source(resolve_source(cam.url, trusted=True, media_dir=None), cam)
    try:
        frame = src.read()
    finally:
        src.close()
    assert frame is not None and frame.shape == (240, 320, 3)
    assert (src.codec, src.fps) == ("h264", 25.0)


def test_a_network_camera_whose_server_stops_sending_fails_its_read_after_the_read_timeout(
        rtsp_server: RtspServer) -> None:
    """A frozen server (its process stopped: the connection stays open, nothing comes) ends the read with a
    SourceError after read_timeout_s, so capture reconnects; the read never blocks for good."""
    cam = CameraSettings(id="cam", url=rtsp_server.url, read_timeout_s=1.0)
    src = open_source(resolve_source(cam.url, trusted=True, media_dir=None), cam)
    try:
        assert src.read() is not None
        with rtsp_server.frozen(), pytest.raises(SourceError, match="read failed: no answer within 1 s"):
            for _ in range(1000):  # the frames already buffered, then the timeout
                src.read()
    finally:
        src.close()


def test_a_camera_that_never_answers_fails_its_open_after_the_open_timeout_saying_so() -> None:
    with silent_server() as (port, _):
        hung, errors = open_in_thread(f"rtsp://admin:hunter2@127.0.0.1:{port}/cam", open_timeout_s=1.0)
        hung.join(20)
    assert not hung.is_alive() and len(errors) == 1 and isinstance(errors[0], SourceError), errors
    assert str(errors[0]) == f"cannot open stream: no answer within 1 s: rtsp://***@127.0.0.1:{port}/cam"


@contextmanager
def http_files(files: dict[str, tuple[bytes, str] | str]) -> Iterator[tuple[str, list[str]]]:
    """Serve {path: (body, content type), or the URL it redirects to} on 127.0.0.1 -> (base URL, the paths
    requested, in order)."""
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            answer = files.get(self.path)
            if answer is None:
                self.send_error(404)
                return
            if isinstance(answer, str):
                self.send_response(302)
                self.send_header("Location", answer)
                self.end_headers()
                return
            body, content_type = answer
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client may stop reading once it has a frame
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_http_camera_is_not_redirected_to_another_address() -> None:
    """The host policy checks the URL a camera names; a redirect to another address (a cloud metadata service)
    is not followed: the open fails saying why, and the redirect's target is never requested."""
    # the target is a path of the same server: its log shows whether the redirect was followed
    with (http_files({"/video": "/latest/meta-data/"}) as (base, requested),
          pytest.raises(SourceError, match="redirects are not followed")):
        read_one(f"{base}/video")
    assert requested == ["/video"]


def test_an_http_camera_added_over_the_api_may_not_be_a_playlist(tmp_path: Path) -> None:
    """A playlist (HLS) makes FFmpeg fetch its segments from whatever hosts it names, past the host policy that
    checked the camera's URL: a camera added over the API may not be one (its segment is never requested); one
    from the settings file may, and an API camera's plain video stream plays."""
    require_ffmpeg()
    segment = tmp_path / "seg.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(DEMO), "-c", "copy", "-f", "mpegts", str(segment)],
                   check=True)
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/seg.ts\n#EXT-X-ENDLIST\n"
    files = {"/live.m3u8": (playlist, "application/vnd.apple.mpegurl"), "/seg.ts": (segment.read_bytes(), "video/mp2t")}
    with http_files(files) as (base, requested):
        with pytest.raises(SourceError, match="not a playlist"):
            read_one(f"{base}/live.m3u8", trusted=False)
        assert requested == ["/live.m3u8"]
        assert read_one(f"{base}/live.m3u8", trusted=True) is not None
        assert "/seg.ts" in requested
        assert read_one(f"{base}/seg.ts", trusted=False) is not None
