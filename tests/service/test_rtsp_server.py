"""The test RTSP server: live test patterns many clients open at once, and `--files` mode (used by
benchmarks/learn_camera.py), a recorded H.264 file served live."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import SERVER, SYSTEM_PYTHON, RtspServer, require_ffmpeg, require_rtsp
from timing import scaled


@pytest.mark.timeout(60)
def test_files_are_served_from_their_first_frame_to_their_last(tmp_path: Path) -> None:
    require_ffmpeg()
    require_rtsp()
    levels = [20 + 10 * i for i in range(20)]  # each frame its own grey level: which frame arrived is visible
    for i, v in enumerate(levels):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((64, 96, 3), v, np.uint8))
    media = tmp_path / "media"
    media.mkdir()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(tmp_path / "%03d.png"),
                    "-c:v", "libx264", "-x264-params", "keyint=10:bframes=0", "-pix_fmt", "yuv420p",
                    str(media / "clip.mp4")], check=True)
    proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--port", "0", "--files", str(media)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        for _ in range(2):  # every client plays the file from its start
            cap = cv2.VideoCapture(f"rtsp://127.0.0.1:{int(line.split()[1])}/clip", cv2.CAP_FFMPEG)
            seen = []
            ok, frame = cap.read()
            while ok:
                seen.append(float(frame.mean()))
                ok, frame = cap.read()
            cap.release()
            assert len(seen) == len(levels)
            assert np.allclose(seen, levels, atol=4), seen
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server quits with its stdin
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.timeout(120)
def test_clients_that_connect_and_leave_together_keep_the_server_up_and_each_sees_a_switch() -> None:
    """Three cameras opening one URL at once, reading a little and closing, over and over, as the service's
    reconnecting captures do; then two connected clients both see the picture switch to snow."""
    require_rtsp()
    srv = RtspServer(pattern="ball").start()
    try:
        failures: list[str] = []

        def read(frames: int) -> None:
            try:
                with av.open(srv.url, options={"rtsp_transport": "tcp"}, timeout=scaled(5)) as c:
                    for i, _ in enumerate(c.decode(video=0)):
                        if i >= frames:
                            break
            except Exception as e:  # noqa: BLE001 (any failure of a client thread is the test's)
                failures.append(repr(e))

        for _ in range(15):
            clients = [threading.Thread(target=read, args=(3 + 5 * k,)) for k in range(3)]
            for t in clients:
                t.start()
            for t in clients:
                t.join(scaled(30))
                assert not t.is_alive(), "a client hung"
            assert srv.proc is not None and srv.proc.poll() is None, "the RTSP server died"
        assert failures == []

        opened = [av.open(srv.url, options={"rtsp_transport": "tcp"}, timeout=scaled(5)) for _ in range(2)]
        try:
            frames = [c.decode(video=0) for c in opened]
            assert all(_texture(next(f)) < 40 for f in frames)  # the ball on a flat background
            srv.switch("snow")
            deadline = time.monotonic() + scaled(10)
            seen = [0.0, 0.0]
            while min(seen) < 40 and time.monotonic() < deadline:
                seen = [max(s, _texture(next(f))) for s, f in zip(seen, frames, strict=True)]
            assert min(seen) >= 40, seen
        finally:
            for c in opened:
                c.close()
    finally:
        srv.kill()


def _texture(frame: av.VideoFrame) -> float:
    """Mean absolute difference between neighbouring pixels: near 0 on flat colour, large on white noise."""
    grey = frame.to_ndarray(format="gray").astype(np.int16)
    return float(np.abs(np.diff(grey, axis=1)).mean())
