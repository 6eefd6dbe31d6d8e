"""REST API against a real uvicorn server, a real pipeline (untrained predictor) and SQLite in tmp_path."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer, api_client, serve_api, untrained_predictor, write_clip

KEY = "test-key-123"
SECRET = "hunter2pw"


@pytest.fixture(scope="module")
def clip_predictor():  # type: ignore[no-untyped-def]
    return untrained_predictor()


@pytest.fixture
def server(tmp_path: Path, clip_predictor) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with serve_api(tmp_path, clip_predictor, api_key=KEY, max_upload_mb=1, max_clip_seconds=10) as srv:
        yield srv


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(server, KEY) as c:
        yield c


@pytest.mark.timeout(30)
def test_api_key_required_on_rest_but_not_healthz(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            for path in ("/v1/cameras", "/v1/events", "/v1/stats"):
                r = c.get(path, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert "API key" in r.json()["detail"]
        assert c.post("/v1/score", content=b"x" * 10).status_code == 401
        assert c.get("/v1/cameras", headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/v1/cameras", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/openapi.json", headers={"X-API-Key": KEY}).json()["paths"]["/v1/score"]["post"]


@pytest.mark.timeout(30)
def test_camera_crud_and_errors(client: httpx.Client) -> None:
    url = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream?password={SECRET}"  # nothing listens on port 9
    r = client.post("/v1/cameras", json={"id": "door", "url": url, "open_timeout_s": 1, "read_timeout_s": 1})
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["id"] == "door" and cam["state"] != "live"
    assert client.post("/v1/cameras", json={"id": "door", "url": url}).status_code == 409
    assert "already exists" in client.post("/v1/cameras", json={"id": "door", "url": url}).json()["detail"]
    for bad in ("ftp://127.0.0.1/x.mp4", "concat:/etc/passwd|/etc/hosts", "/etc/passwd", "webcam:0"):
        r = client.post("/v1/cameras", json={"id": "bad", "url": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]
    assert client.post("/v1/cameras", json={"id": "Not A Slug", "url": url}).status_code == 422
    assert client.get("/v1/cameras/nope").status_code == 404
    assert "nope" in client.delete("/v1/cameras/nope").json()["detail"]

    time.sleep(2.5)  # the unreachable camera tries, fails and reports it; the service stays up
    state = client.get("/v1/cameras/door").json()
    assert state["state"] in ("connecting", "reconnecting", "stalled"), state
    # No model of its own: the shipped one (here an untrained predictor without a file, so no sha256).
    assert state["model"] == {"version": "shipped", "sha256": None, "error": None, "created": None,
                              "footage": None, "heldout_psnr": None, "calibration": None}
    assert state["mode"] == "armed" and state["learning"] is None  # use_shipped: true unless it learns
    assert client.get("/v1/stats").json()["cameras"]["door"]["model"]["version"] == "shipped"
    assert [c["id"] for c in client.get("/v1/cameras").json()] == ["door"]
    for path in ("/v1/cameras", "/v1/cameras/door", "/v1/stats"):
        body = client.get(path).text
        assert SECRET not in body and "admin" not in body, (path, body)
    assert client.delete("/v1/cameras/door").status_code == 204
    assert client.get("/v1/cameras/door").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok", "cameras": 0, "pipeline_running": True}


@pytest.mark.timeout(60)
def test_uploads_valid_bad_truncated_oversized(client: httpx.Client, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", "." * 20 + "#" * 10 + "." * 10)
    r = client.post("/v1/score", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    frames = body["frames"]
    assert len(frames) == 40 and [f["index"] for f in frames] == list(range(40))
    assert all(f["score"] is None for f in frames[:4])
    for key in ("score", "psnr", "l_int", "l_grad", "l_flow", "a_t"):
        assert isinstance(frames[10][key], float), key
    assert max(f["score"] for f in frames[20:30]) > max(f["score"] for f in frames[5:20])  # noise scores higher
    assert isinstance(body["events"], list) and body["fps"] == pytest.approx(25, abs=0.5)

    data = clip.read_bytes()
    cases = {
        "text": (b"hello, this is not a video\n" * 50, 415),
        "playlist": (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\nfile:///etc/passwd\n", 415),
        "concat": (b"ffconcat version 1.0\nfile 'concat:/etc/passwd|/etc/hosts'\n", 415),
        "flv": (b"FLV\x01\x05" + bytes(400), 415),  # FFmpeg reads it, but it is not an accepted container
        "truncated": (data[: len(data) // 2], 422),
        "empty": (b"", 422),
    }
    for name, (payload, code) in cases.items():
        r = client.post("/v1/score", files={"file": (f"{name}.mp4", payload, "video/mp4")})
        assert r.status_code == code, (name, r.status_code, r.text)
        assert r.json()["detail"], name
    r = client.post("/v1/score", files={"other": ("x.mp4", data, "video/mp4")})
    assert r.status_code == 422 and "'file'" in r.json()["detail"]

    big = b"\0" * (3 * 2**20)  # the limit is 1 MB
    r = client.post("/v1/score", files={"file": ("big.mp4", big, "video/mp4")})  # Content-Length: early 413
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
        for _ in range(24):
            yield b"\0" * 65536

    r = client.post("/v1/score", content=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413, r.text

    assert client.get("/healthz").json()["status"] == "ok"
    tmp = Path(client.get("/v1/stats").status_code and tmp_path / "data" / "tmp")
    assert not list(tmp.iterdir()), "uploads must be deleted"


@pytest.mark.timeout(90)
def test_clip_events_have_the_live_fields_and_their_images(client: httpx.Client, server: LiveServer,
                                                           tmp_path: Path) -> None:
    import base64

    import cv2
    import numpy as np

    clip = write_clip(tmp_path / "clip.mp4", "." * 20 + "#" * 20 + "." * 40)
    r = client.post("/v1/score", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    (ev,) = body["events"]
    live_fields = {"id", "camera_id", "type", "action", "start_ts", "end_ts", "peak_score", "peak_ts", "frames",
                   "snapshot_url", "heatmap_url"}
    assert set(ev) == live_fields and ev["camera_id"] == "clip" and (ev["type"], ev["action"]) == ("anomaly", None)
    assert 0.8 <= ev["start_ts"] <= ev["peak_ts"] <= ev["end_ts"] <= 80 / 25  # seconds from the clip's start
    assert body["images_expire_s"] == 3600

    def jpeg(data: bytes) -> np.ndarray:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[:2] == (120, 160)
        return img

    linked = {}
    for key in ("snapshot_url", "heatmap_url"):
        assert ev[key].startswith("/v1/clips/"), ev[key]
        got = client.get(ev[key])
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        linked[key] = jpeg(got.content)
        # an <img> sends no header: the key may come as ?api_key=, and without it the image is refused
        assert httpx.get(server.url + ev[key], params={"api_key": KEY}).status_code == 200
        assert httpx.get(server.url + ev[key]).status_code == 401

    r = client.post("/v1/score", params={"images": "inline"},
                    files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
    body = r.json()
    (inline,) = body["events"]
    assert body["images_expire_s"] is None and inline["start_ts"] == ev["start_ts"]
    for key in ("snapshot_url", "heatmap_url"):
        head, data = inline[key].split(",", 1)
        assert head == "data:image/jpeg;base64"
        assert np.abs(jpeg(base64.b64decode(data)).astype(int) - linked[key]).mean() < 1  # the same picture


@pytest.mark.timeout(30)
def test_a_camera_deleted_while_it_is_being_added_is_a_409_not_a_500(tmp_path: Path, clip_predictor,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from live_server import serve

    from service.api import create_app
    from service.settings import load_settings
    from service.wiring import build_service

    service = build_service(load_settings(None, data_dir=tmp_path / "data", api_key=KEY), predictor=clip_predictor)
    learning = service.pipeline.learning
    add = learning.add_camera

    def add_then_deleted(settings, **kw):  # type: ignore[no-untyped-def]
        add(settings, **kw)
        learning.delete_camera(settings.id)  # the DELETE of another client, before the answer is built

    monkeypatch.setattr(learning, "add_camera", add_then_deleted)
    with serve(create_app(service)) as srv, api_client(srv, KEY) as c:
        r = c.post("/v1/cameras", json={"id": "gone", "url": "rtsp://127.0.0.1:9/stream", "open_timeout_s": 1})
        assert r.status_code == 409 and "deleted while it was being added" in r.json()["detail"], r.text
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/cameras").json() == []
