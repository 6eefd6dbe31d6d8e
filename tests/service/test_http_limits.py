"""Connection limits (service.server) against real uvicorn on loopback, with raw sockets: a head that never ends,
a body that trickles or stalls, idle connections beyond the cap, an oversized head. Counts and times are small
and bounded."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, WebSocket
from live_server import LiveServer, serve
from starlette.requests import ClientDisconnect
from timing import scaled

from service.settings import HttpSettings, Settings

pytestmark = pytest.mark.timeout(60)


def limits(**kw: Any) -> Settings:
    base = {"header_timeout_s": 1.0, "keep_alive_s": 5.0, "max_idle_connections": 20, "max_connections": 200,
            "body_idle_timeout_s": 2.0, "body_min_rate_kbps": 1.0, "body_grace_s": 2.0, "body_timeout_s": 20.0}
    return Settings(http=HttpSettings(**{**base, **kw}))


def app_with_upload(seen: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.send_text(await websocket.receive_text())

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        n = 0
        try:
            async for chunk in request.stream():
                n += len(chunk)
        except ClientDisconnect:
            seen["disconnected"] = n
            raise
        return {"bytes": n}

    return app


@pytest.fixture
def seen() -> dict[str, Any]:
    return {}


@pytest.fixture
def server(request: pytest.FixtureRequest, seen: dict[str, Any]) -> Iterator[LiveServer]:
    settings = getattr(request, "param", None) or limits()
    with serve(app_with_upload(seen), settings=settings) as srv:
        yield srv


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def read_until_closed(s: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (monotonic)."""
    s.settimeout(scaled(timeout))
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            return data, float("inf")
        except ConnectionResetError:
            return data, time.monotonic()
        if not chunk:
            return data, time.monotonic()
        data += chunk


def test_a_head_that_never_ends_is_closed_within_the_deadline(server: LiveServer) -> None:
    socks = [connect(server.port) for _ in range(10)]
    t0 = time.monotonic()
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # ...and never the end of the head
    for s in socks:
        data, closed = read_until_closed(s, 5)
        assert closed - t0 < 1.0 + 1.5, "a slow head must be cut off at header_timeout_s (1 s)"
        assert data.startswith(b"HTTP/1.1 408"), data
        s.close()
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200


def test_a_connection_that_sends_nothing_is_closed_too(server: LiveServer) -> None:
    s = connect(server.port)
    t0 = time.monotonic()
    _, closed = read_until_closed(s, 5)
    assert closed - t0 < 2.5
    s.close()


def test_a_trickling_body_is_cut_off(server: LiveServer, seen: dict[str, Any]) -> None:
    """100 B every 0.5 s is 0.2 kB/s, under the 1 kB/s minimum: cut off when the 2 s grace ends."""
    s = connect(server.port)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.monotonic()
    s.settimeout(0.5)
    data = b""
    closed = float("inf")
    while time.monotonic() - t0 < 8:
        try:
            s.sendall(b"x" * 100)
        except (BrokenPipeError, ConnectionResetError):
            closed = time.monotonic()
            break
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = time.monotonic()
            break
        if not chunk:
            closed = time.monotonic()
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"slower than 1 kB/s" in data
    assert closed - t0 < 2.0 + scaled(1.5)
    deadline = time.monotonic() + scaled(2)
    while "disconnected" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0 < seen["disconnected"] < 2000, "the app saw a disconnect, not a complete body"


@pytest.mark.parametrize("server", [limits(body_min_rate_kbps=0, body_idle_timeout_s=1.0)], indirect=True)
def test_a_stalled_body_is_cut_off(server: LiveServer) -> None:
    s = connect(server.port)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    t0 = time.monotonic()
    data, closed = read_until_closed(s, 5)
    s.close()
    assert data.startswith(b"HTTP/1.1 408") and b"no body data for 1 s" in data, data
    assert closed - t0 < 1.0 + scaled(1.5)


def test_a_complete_upload_at_speed_passes(server: LiveServer) -> None:
    r = httpx.post(f"{server.url}/upload", content=b"x" * 3_000_000, timeout=10)
    assert r.status_code == 200 and r.json() == {"bytes": 3_000_000}


@pytest.mark.parametrize("server", [limits(header_timeout_s=30.0)], indirect=True)
def test_idle_connections_beyond_the_cap_are_closed_while_healthz_answers(server: LiveServer) -> None:
    socks = [connect(server.port) for _ in range(50)]  # the cap is 20 idle connections
    time.sleep(0.5)
    t0 = time.monotonic()
    r = httpx.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200 and time.monotonic() - t0 < scaled(1.0)
    closed = 0
    for s in socks:
        s.settimeout(0.2)
        try:
            closed += s.recv(1) == b""
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed += 1
        s.close()
    assert closed >= 30, f"only {closed} of the 30 idle connections beyond the cap were closed"


def test_an_oversized_head_is_refused(server: LiveServer) -> None:
    s = connect(server.port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n")
    data, closed = read_until_closed(s, 5)
    s.close()
    assert data.startswith(b"HTTP/1.1 431"), data[:100]
    assert closed < float("inf"), "the connection is closed after the 431"


def test_keep_alive_requests_still_work(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(3):  # the same connection: the head deadline restarts after each response
            assert c.get("/healthz").status_code == 200
            time.sleep(0.6)


def test_a_websocket_outlives_the_head_deadline(server: LiveServer) -> None:
    from websockets.sync.client import connect as ws_connect

    with ws_connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5) as ws:
        time.sleep(1.5)  # past header_timeout_s (1 s): an upgraded connection is not an HTTP head
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
