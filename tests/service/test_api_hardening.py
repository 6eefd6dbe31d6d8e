"""Issue 36 against a real uvicorn server: camera URL limits and host policy, no credential in any output (API,
stats, 422 details, logs, last_error), the key before the body, docs behind the key, cross-site POSTs refused."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer, api_client, serve_api, untrained_predictor, write_clip
from timing import scaled

KEY = "hardening-key"
PASSWORDS = ("pa#ss1", "pa/ss2", "p@ss3", "pa%40ss4")
TOKEN = "tok3nSECRET"


@pytest.fixture(scope="module")
def clip_predictor():  # type: ignore[no-untyped-def]
    return untrained_predictor()


@pytest.fixture
def server(tmp_path: Path, clip_predictor) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with serve_api(tmp_path, clip_predictor, api_key=KEY, max_cameras=3, max_url_length=300) as srv:
        yield srv


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(server, KEY) as c:
        yield c


@pytest.mark.timeout(60)
def test_credentials_never_leak(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = []
    for i, pw in enumerate(PASSWORDS):  # nothing listens on port 9: each camera fails and reports why
        url = f"rtsp://admin{i}:{pw}@127.0.0.1:9/stream?access_token={TOKEN}&channel=1"
        r = client.post("/v1/cameras", json={"id": f"c{i}", "url": url, "open_timeout_s": 1, "read_timeout_s": 1})
        # An unencoded '#' or '/' ends the authority early (for FFmpeg too): "admin0:pa" has no valid port.
        assert r.status_code == (422 if i < 2 else 201), r.text
        answers.append(r.text)
    deadline = time.monotonic() + scaled(15)
    while not all(c["last_error"] for c in client.get("/v1/cameras").json()):
        assert time.monotonic() < deadline, "the cameras never reported their error"
        time.sleep(0.3)
    cams = client.get("/v1/cameras").json()
    assert cams[0]["url"] == "rtsp://***@127.0.0.1:9/stream?access_token=***&channel=***"
    outputs = {"cameras": client.get("/v1/cameras").text, "stats": client.get("/v1/stats").text,
               "answers": "\n".join(answers), "log": "\n".join(r.getMessage() for r in caplog.records)}
    for where, text in outputs.items():
        for secret in (TOKEN, "pa#ss", "pa/ss", "p@ss", "pa%40ss", "admin"):
            assert secret not in text, (where, secret)
    assert "last_error" in outputs["cameras"] and "127.0.0.1:9" in outputs["log"]


@pytest.mark.timeout(30)
def test_422_never_echoes_the_input(client: httpx.Client) -> None:
    for url in (f"ftp://admin:{PASSWORDS[0]}@cam/x", f"rtsp://u:{TOKEN}@/nohost", "webcam:" + TOKEN):
        r = client.post("/v1/cameras", json={"id": "bad", "url": url})
        assert r.status_code == 422, r.text
        assert TOKEN not in r.text and PASSWORDS[0] not in r.text and "input" not in r.json()["detail"][0]
    r = client.post("/v1/cameras", json={"id": "bad", "url": f"rtsp://admin:{TOKEN}@cam/x", "fps": "fast"})
    assert r.status_code == 422 and TOKEN not in r.text and r.json()["detail"][0]["loc"] == ["body", "fps"]
    r = client.post("/v1/cameras", json={"id": "b", "url": "rtsp://cam/x", TOKEN * 100: 1})  # an unknown field
    assert r.status_code == 422 and len(r.text) < 1000


@pytest.mark.timeout(30)
def test_camera_url_length_count_and_host_policy(client: httpx.Client, server: LiveServer) -> None:
    r = client.post("/v1/cameras", json={"id": "long", "url": "rtsp://cam/" + "x" * 10_000})
    assert r.status_code == 422 and "max_url_length" in r.json()["detail"] and len(r.text) < 500
    own = server.port
    for url in ("http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/",
                "http://[::ffff:169.254.169.254]/", "http://metadata.google.internal/",
                f"http://127.0.0.1:{own}/v1/stats", f"http://localhost:{own}/", f"rtsp://0:{own}/",
                f"http://127.1:{own}/"):
        r = client.post("/v1/cameras", json={"id": "meta", "url": url})
        assert r.status_code == 422, (url, r.text)
    assert client.get("/v1/cameras").json() == []
    for i in range(3):
        assert client.post("/v1/cameras", json={"id": f"c{i}", "url": f"rtsp://10.0.0.{i + 1}/s"}).status_code == 201
    r = client.post("/v1/cameras", json={"id": "c3", "url": "rtsp://10.0.0.9/s"})
    assert r.status_code == 409 and "max_cameras" in r.json()["detail"]
    assert client.delete("/v1/cameras/c0").status_code == 204
    assert client.post("/v1/cameras", json={"id": "c3", "url": "rtsp://10.0.0.9/s"}).status_code == 201


@pytest.mark.timeout(30)
def test_allow_list_and_private_hosts(tmp_path: Path, clip_predictor) -> None:  # type: ignore[no-untyped-def]
    with serve_api(tmp_path, clip_predictor, camera_allowed_hosts=["10.1.0.0/16"]) as srv, \
            httpx.Client(base_url=srv.url, timeout=20) as c:
        assert c.post("/v1/cameras", json={"id": "a", "url": "rtsp://10.1.2.3/s"}).status_code == 201
        r = c.post("/v1/cameras", json={"id": "b", "url": "rtsp://10.2.0.1/s"})
        assert r.status_code == 422 and "camera_allowed_hosts" in r.json()["detail"]
    with serve_api(tmp_path, clip_predictor, camera_private_hosts=False) as srv, \
            httpx.Client(base_url=srv.url, timeout=20) as c:
        assert c.post("/v1/cameras", json={"id": "b", "url": "rtsp://192.168.1.2/s"}).status_code == 422


@pytest.mark.timeout(30)
def test_key_checked_before_the_body(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/v1/cameras", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 401, r.text
        r = c.post("/v1/cameras", json={"id": "x"})
        assert r.status_code == 401, r.text
        r = c.post("/v1/cameras", content=b"{not json", headers={"Content-Type": "application/json", "X-API-Key": KEY})
        assert r.status_code == 422 and "{not json" not in r.text


@pytest.mark.timeout(30)
def test_docs_behind_the_key_unless_public(server: LiveServer, tmp_path: Path, clip_predictor) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for path in ("/docs", "/openapi.json"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        page = c.get("/docs", params={"api_key": KEY})
        assert page.status_code == 200 and f"/openapi.json?api_key={KEY}" in page.text
        assert c.get("/openapi.json", params={"api_key": KEY}).json()["paths"]
        assert c.get("/redoc").status_code == 404
    with serve_api(tmp_path, clip_predictor, api_key=KEY, docs_public=True) as srv, \
            httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").json()["paths"]
        assert c.get("/v1/cameras").status_code == 401


@pytest.mark.timeout(60)
def test_cross_site_posts_are_refused(tmp_path: Path, clip_predictor) -> None:  # type: ignore[no-untyped-def]
    clip = write_clip(tmp_path / "clip.mp4", "." * 12).read_bytes()
    files = {"file": ("clip.mp4", clip, "video/mp4")}
    with serve_api(tmp_path, clip_predictor, allowed_origins=["https://ops.example.com"]) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as c:  # no key: only Origin protects it
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}):
            r = c.post("/v1/score", files=files, headers=headers)
            assert r.status_code == 403 and "Origin" in r.json()["detail"], headers
            r = c.post("/v1/cameras", json={"id": "x", "url": "rtsp://10.0.0.1/s"}, headers=headers)
            assert r.status_code == 403, headers
            assert c.delete("/v1/cameras/x", headers=headers).status_code == 403
        for headers in ({}, {"Origin": srv.url}, {"Origin": "https://ops.example.com"},
                        {"Sec-Fetch-Site": "same-origin", "Origin": srv.url}):
            assert c.post("/v1/score", files=files, headers=headers).status_code == 200, headers
        assert c.get("/v1/cameras", headers={"Origin": "https://evil.example"}).status_code == 200  # reads: CORS
