"""The dashboard's files and the camera picture routes (frame.jpg, stream.mjpg) against a real server with a
looped file camera (untrained predictor)."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from live_server import H, LiveServer, W, api_client, serve_api, untrained_predictor, write_clip
from timing import scaled

from service.api.dashboard import STATIC

KEY = "dash-key-456"
FILES = ("index.html", "dashboard.js", "dashboard.css", "favicon.svg")


@pytest.fixture(scope="module")
def clip_predictor():  # type: ignore[no-untyped-def]
    return untrained_predictor()


@pytest.fixture
def server(tmp_path: Path, clip_predictor) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    clip = write_clip(tmp_path / "cam.mp4", "." * 15 + "#" * 5 + "." * 20, fps=10)
    cameras = [{"id": "cam", "url": str(clip), "fps": 10, "loop": True, "alerts": {"on_threshold": 5.0}}]
    with serve_api(tmp_path, clip_predictor, api_key=KEY, cameras=cameras) as srv:
        yield srv


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(server, KEY) as c:
        yield c


def wait_for(check, timeout: float = 60.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        out = check()
        if out:
            return out
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def test_static_files_ship_in_the_package_and_need_nothing_from_outside() -> None:
    for name in FILES:
        assert (STATIC / name).is_file(), name
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert re.search(r'\[tool\.setuptools\.package-data\]\s*service = \["static/\*"\]', pyproject)
    html = (STATIC / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs and all(r.startswith("/ui/") and (STATIC / r[4:]).is_file() for r in refs), refs
    js = (STATIC / "dashboard.js").read_text()
    assert "http://" not in js and "https://" not in js and "import " not in js  # one module, no CDN


@pytest.mark.timeout(60)
def test_dashboard_is_served_without_key_and_says_a_key_is_needed(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/ui/dashboard.js">' in r.text
        assert c.get("/ui/config.json").json() == {"api_key_required": True}
        for name, ctype in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"),
                            ("favicon.svg", "image/svg+xml")):
            r = c.get(f"/ui/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), name
        for bad in ("nope.js", "index.html", "..%2Fapi%2Fapp.py", "%2E%2E%2Fsettings.py", "x.py"):
            assert c.get(f"/ui/{bad}").status_code == 404, bad
        assert "/" not in c.get("/openapi.json", headers={"X-API-Key": KEY}).json()["paths"]  # not part of the API


@pytest.mark.timeout(120)
def test_frame_jpg_overlay_errors_and_key(server: LiveServer, client: httpx.Client) -> None:
    status = client.get("/v1/cameras/cam").json()
    assert status["on_threshold"] == 5.0  # the camera's own alert settings
    with httpx.Client(base_url=server.url, timeout=10) as anon:
        assert anon.get("/v1/cameras/cam/frame.jpg").status_code == 401
        assert anon.get("/v1/cameras/cam/frame.jpg", params={"api_key": "wrong"}).status_code == 401
        assert anon.get("/v1/cameras/cam/stream.mjpg", params={"api_key": "wrong"}).status_code == 401
        assert anon.get("/v1/cameras/nope/frame.jpg", params={"api_key": KEY}).status_code == 404

    # A camera that never delivers a frame: 503 with a JSON detail (frame and stream alike).
    r = client.post("/v1/cameras", json={"id": "dark", "url": "rtsp://127.0.0.1:9/x", "open_timeout_s": 1})
    assert r.status_code == 201
    for path in ("/v1/cameras/dark/frame.jpg", "/v1/cameras/dark/stream.mjpg"):
        r = client.get(path)
        assert r.status_code == 503 and "no frame yet" in r.json()["detail"], path

    # Scored frames exist once the camera reports some (history of k frames first).
    wait_for(lambda: client.get("/v1/cameras/cam").json()["frames_scored"] >= 3)
    r = client.get("/v1/cameras/cam/frame.jpg", params={"api_key": KEY}, headers={"X-API-Key": ""})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert decode(r.content).shape == (H, W, 3)
    plain = decode(client.get("/v1/cameras/cam/frame.jpg", params={"overlay": "none"}).content)
    heat = decode(client.get("/v1/cameras/cam/frame.jpg", params={"overlay": "heatmap"}).content)
    assert heat.shape == plain.shape
    # The clip is grey; the JET overlay colours it: blue/red channels differ where grey has them equal.
    assert float(np.abs(heat[..., 0].astype(int) - heat[..., 2].astype(int)).mean()) > 20
    assert float(np.abs(plain[..., 0].astype(int) - plain[..., 2].astype(int)).mean()) < 5
    assert client.get("/v1/cameras/cam/frame.jpg", params={"overlay": "bogus"}).status_code == 422


@pytest.mark.timeout(120)
def test_mjpeg_stream_sends_frames_and_ends_when_the_camera_goes(server: LiveServer, client: httpx.Client) -> None:
    wait_for(lambda: client.get("/v1/cameras/cam").json()["last_frame_age_s"] is not None)
    parts: list[bytes] = []
    started = time.monotonic()
    with client.stream("GET", "/v1/cameras/cam/stream.mjpg") as r:
        assert r.status_code == 200
        ctype = r.headers["content-type"]
        assert ctype.startswith("multipart/x-mixed-replace")
        boundary = ctype.split("boundary=")[1].encode()
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            while buf.count(b"--" + boundary) >= 2:
                _, _, rest = buf.partition(b"--" + boundary)
                part, sep, tail = rest.partition(b"--" + boundary)
                parts.append(part)
                buf = sep + tail
            if len(parts) == 3:
                # The camera goes: the stream must end by itself (the read below returns).
                assert client.delete("/v1/cameras/cam").status_code == 204
            if len(parts) > 200:
                break
    assert 3 <= len(parts) < 200, len(parts)
    for part in parts[:3]:
        header, _, body = part.partition(b"\r\n\r\n")
        assert b"Content-Type: image/jpeg" in header
        length = int(re.search(rb"Content-Length: (\d+)", header).group(1))  # type: ignore[union-attr]
        assert decode(body[:length]).shape == (H, W, 3)
    # Bounded rate: at most STREAM_MAX_FPS (10) new frames a second, and the clip plays at 10 fps.
    assert len(parts) <= 10 * (time.monotonic() - started) + 2
    assert client.get("/v1/cameras/cam/stream.mjpg").status_code == 404
