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
        assert closed - t0 < 1.0 + scaled(1.5), "a slow head must be cut off at header_timeout_s (1 s)"
        assert data.startswith(b"HTTP/1.1 408"), data
        s.close()
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200


def test_a_connection_that_sends_nothing_is_closed_too(server: LiveServer) -> None:
    s = connect(server.port)
    t0 = time.monotonic()
    _, closed = read_until_closed(s, 5)
    assert closed - t0 < 1.0 + scaled(1.5)
    s.close()


def test_a_trickling_body_is_cut_off(server: LiveServer, seen: dict[str, Any]) -> None:
    """100 B every 0.5 s is 0.2 kB/s, under the 1 kB/s minimum: cut off when the 2 s grace ends."""
    s = connect(server.port)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.monotonic()
    s.settimeout(0.5)
    data = b""
    closed = float("inf")
    while time.monotonic() - t0 < 2.0 + scaled(3):
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


def closed_now(socks: list[socket.socket]) -> list[bool]:
    """Which of `socks` the server has closed so far, without waiting (the server sends none of them data)."""
    out = []
    for s in socks:
        s.setblocking(False)
        try:
            out.append(s.recv(1) == b"")
        except BlockingIOError:
            out.append(False)
        except ConnectionResetError:
            out.append(True)
    return out


def wait_closed(socks: list[socket.socket], count: int, timeout: float) -> list[bool]:
    """Which of `socks` the server has closed, once at least `count` of them are (or the deadline passed)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        closed = closed_now(socks)
        if sum(closed) >= count or time.monotonic() > deadline:
            return closed
        time.sleep(0.05)


@pytest.mark.parametrize("server", [limits(header_timeout_s=30.0, idle_grace_s=0.5)], indirect=True)
def test_idle_connections_beyond_the_cap_are_closed_once_past_the_grace(server: LiveServer) -> None:
    """50 idle connections, 20 allowed past the grace: as each one's grace ends the oldest beyond the cap is
    closed, so the 30th is closed when the last one's grace ends, and no more are after it."""
    socks = [connect(server.port) for _ in range(50)]
    try:
        wait_closed(socks, 30, timeout=0.5 + 5)
        time.sleep(0.5)  # one more grace: a server that closes too many has done so by now (or the test misses it)
        closed = closed_now(socks)
        assert sum(closed) == 30, f"{sum(closed)} of 50 idle connections closed; the cap is 20"
        assert all(closed[:30]) and not any(closed[30:]), "the oldest ones are closed first"
        assert httpx.get(f"{server.url}/healthz", timeout=scaled(5)).status_code == 200
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("server", [limits(header_timeout_s=30.0, idle_grace_s=scaled(3.0))], indirect=True)
def test_a_burst_of_clients_beyond_the_idle_cap_is_served(server: LiveServer) -> None:
    """60 clients connect at the same instant and send their requests a moment later (a loaded client, or a
    burst of WebSocket clients on one event loop): none of them is idle, all are answered, though the idle cap is
    20."""
    socks = [connect(server.port) for _ in range(60)]
    time.sleep(0.3)  # a moment for the server to accept them, well within idle_grace_s
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answers = []
    for s in socks:
        s.settimeout(scaled(5))
        try:
            answers.append(s.recv(65536).split(b"\r\n", 1)[0])
        except (TimeoutError, ConnectionResetError) as e:
            answers.append(type(e).__name__.encode())
        s.close()
    assert answers.count(b"HTTP/1.1 200 OK") == 60, answers


@pytest.mark.parametrize("server", [limits(header_timeout_s=30.0, idle_grace_s=scaled(3.0))], indirect=True)
def test_a_burst_of_websocket_clients_beyond_the_idle_cap_all_connect(server: LiveServer) -> None:
    import asyncio

    from websockets.asyncio.client import connect as ws_connect

    async def client(i: int) -> str:
        async with ws_connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=scaled(10)) as ws:
            await ws.send(f"hello {i}")
            return str(await ws.recv())

    async def burst() -> list[str | BaseException]:
        return await asyncio.gather(*(client(i) for i in range(60)), return_exceptions=True)

    got = asyncio.run(burst())
    assert got == [f"hello {i}" for i in range(60)], [g for g in got if isinstance(g, BaseException)][:3]


@pytest.mark.parametrize("server", [limits(header_timeout_s=30.0, max_idle_connections=100, max_connections=30,
                                           idle_grace_s=30.0)], indirect=True)
def test_fresh_idle_connections_are_closed_when_the_server_is_full(server: LiveServer) -> None:
    """Within the grace, idle connections do not count against the idle cap, but they must not fill
    max_connections either: there the oldest idle ones are closed and /healthz still answers (not 503)."""
    socks = [connect(server.port) for _ in range(45)]
    try:
        r = httpx.get(f"{server.url}/healthz", timeout=scaled(5))
        assert r.status_code == 200, r.text
        closed = wait_closed(socks, 45 - 30 + 1, timeout=5)
        assert sum(closed) >= 45 - 30 + 1 and closed[0] and not closed[-1], closed
    finally:
        for s in socks:
            s.close()


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
