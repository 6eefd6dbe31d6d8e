"""A client that stops reading must not hold up anything, and must not lose events silently: the server
closes it with 4000 (reconnect with resume_from). Once with a fake socket whose send never completes (the event
backlog overflows), once with a real client against real uvicorn that stops reading (a send stays blocked)."""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer, serve, untrained_predictor

from service.api import create_app, live
from service.api.deps import AppState
from service.frames import REPORTED_METRICS, Event, EventMessage, ScoreMessage
from service.hub import CLOSE_RESUME, Hub
from service.settings import load_settings
from service.store import EventStore
from service.wiring import build_service


class StuckSocket:
    """The parts of starlette's WebSocket that live() uses; the second send blocks forever."""

    def __init__(self, state: AppState) -> None:
        self.app = type("App", (), {"state": type("S", (), {"ffp": state})()})()
        self.headers: dict[str, str] = {}
        self.scope: dict[str, Any] = {}
        self.query_params = _Query({"kinds": "scores,events"})
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.closed_event = asyncio.Event()

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        if len(self.sent) > 1:  # "subscribed" goes out, then the client stops reading
            await asyncio.Event().wait()

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.closed_event.set()


class _Query(dict[str, str]):
    def getlist(self, key: str) -> list[str]:
        return [self[key]] if key in self else []


@pytest.mark.timeout(10)
def test_stuck_client_is_closed_with_resume_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "MAX_PENDING_EVENTS", 5)
    monkeypatch.setattr(live, "MAX_PENDING_SCORES", 5)

    async def main() -> tuple[StuckSocket, Hub]:
        store = EventStore(":memory:")
        hub = Hub(asyncio.get_running_loop())
        state = AppState(settings=load_settings(None), store=store, hub=hub)
        ws = StuckSocket(state)
        task = asyncio.create_task(live.live(ws))  # type: ignore[arg-type]
        while not hub.subscribers():
            await asyncio.sleep(0.01)
        ev = Event("e1", "cam", 1.0, None, 5.0, 1.0, None, None, 1)

        def worker() -> None:  # the pipeline thread never blocks, however stuck the client is
            for i in range(50):
                hub.publish(ScoreMessage("cam", i, 1.0, 0.1, 0.1, dict.fromkeys(REPORTED_METRICS, 0.1), 3.0))
                hub.publish(EventMessage(i + 1, "update", ev))

        await asyncio.wait_for(asyncio.to_thread(worker), 2)
        await asyncio.wait_for(ws.closed_event.wait(), 5)
        await asyncio.wait_for(task, 5)
        store.close()
        return ws, hub

    ws, hub = asyncio.run(main())
    assert ws.closed is not None and ws.closed[0] == CLOSE_RESUME and "resume_from" in ws.closed[1]
    assert not hub.subscribers(), "the closed client is unsubscribed"


KEY = "slow-key"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = load_settings(None, data_dir=tmp_path / "data", api_key=KEY)
    with serve(create_app(build_service(settings, predictor=untrained_predictor()))) as srv:
        yield srv


def _stats(server: LiveServer) -> dict[str, int]:
    r = httpx.get(f"{server.url}/v1/stats", headers={"X-API-Key": KEY}, timeout=5)
    return r.json()["websocket"]  # type: ignore[no-any-return]


class RawClient:
    """A WebSocket client that can really stop reading: the handshake by hand on a socket with a small receive
    buffer (the websockets library keeps reading in its own thread), then frames parsed from what it drains."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connect: the window
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of every frame until the connection ends."""
        while True:
            while (frame := self._frame()) is None:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.buf += chunk
            yield frame

    def _frame(self) -> tuple[int, bytes] | None:
        if len(self.buf) < 2:
            return None
        opcode, n, at = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        if n >= 126:
            size = 2 if n == 126 else 8
            if len(self.buf) < 2 + size:
                return None
            n, at = int.from_bytes(self.buf[2:2 + size], "big"), 2 + size
        if len(self.buf) < at + n:
            return None
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return opcode, payload


@pytest.mark.timeout(60)
def test_client_that_stops_reading_is_closed_with_4000(server: LiveServer) -> None:
    hub = server.server.config.app.state.ffp.hub
    stop = threading.Event()

    def pipeline() -> None:  # about 1 MB/s of score messages, far more than a client that does not read takes
        i = 0
        while not stop.is_set():
            for _ in range(100):
                hub.publish(ScoreMessage("cam", i, time.time(), 0.1, 0.1, dict.fromkeys(REPORTED_METRICS, 0.1), 3.0))
                i += 1
            time.sleep(0.03)

    client = RawClient(server.port, f"/v1/ws?api_key={KEY}")
    publisher = threading.Thread(target=pipeline, daemon=True)
    t0 = time.monotonic()
    publisher.start()
    try:
        while (st := _stats(server))["slow_closes"] == 0:  # the client reads nothing meanwhile
            assert time.monotonic() - t0 < 20, f"not closed for not reading: {st}"
            time.sleep(0.2)
        closed_after = time.monotonic() - t0
        assert st["dropped_scores_total"] > 0, "a blocked client's backlog overflows into dropped_scores"
        drained, close = 0, None
        for opcode, payload in client.frames():  # it reads again: the buffered messages, then the close frame
            drained += len(payload)
            if opcode == 0x8:
                close = payload
                break
    finally:
        stop.set()
        publisher.join(5)
        client.sock.close()
    assert close is not None, "no close frame"
    code, reason = int.from_bytes(close[:2], "big"), close[2:].decode()
    assert code == CLOSE_RESUME and "resume_from=" in reason, (code, reason)
    # Keepalive would have closed it with 1011 after 40 s; the backlog and the kernel buffers stay small.
    assert closed_after < live.SEND_TIMEOUT_S + 8, closed_after
    assert drained < 1_000_000, f"{drained} bytes were buffered for a client that did not read"
    assert _stats(server)["clients"] == 0
