"""The HTTP server: uvicorn configured from `Settings.http`, so one slow or idle client cannot hold the process's
sockets and file handles (no reverse proxy is assumed in front of it).

- uvicorn's own settings where it has them: `limit_concurrency` (connections and requests at once; beyond it a
  request gets 503), `timeout_keep_alive`, `h11_max_incomplete_event_size`, `timeout_graceful_shutdown`.
- `GuardedProtocol` (uvicorn's HTTP protocol plus a deadline): a request's head must be complete within
  `header_timeout_s` of the connection opening or the previous response ending, and be at most `max_header_kb`;
  at most `max_idle_connections` connections may have been idle (no request in progress) for longer than
  `idle_grace_s` at once, beyond which the oldest idle one is closed, and when the server holds
  `max_connections` the oldest idle ones are closed whatever their age, so clients that connect and send nothing
  cannot crowd out `/healthz`, while a burst of clients that connect at the same instant all get served.
- `BodyDeadline` (ASGI middleware; Starlette has none): a request body that stalls for `body_idle_timeout_s`,
  arrives slower than `body_min_rate_kbps` on average after `body_grace_s`, or takes longer than
  `body_timeout_s` in all is answered 408 and the connection closed; the app sees a client disconnect.
- `AckedWebSocket` (uvicorn's WebSocket protocol): a ping every WS_PING_S whose pong acknowledges everything sent
  before it, so the application can tell a client that stopped reading long before the kernel's buffers fill up.
  No per-message compression: score messages are a few hundred bytes, and a deflate context is per connection,
  so compressing would encode every message once per client instead of once for all of them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import HttpSettings, Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol
except ImportError:  # uvicorn without httptools parses with h11
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol  # type: ignore[assignment]

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as _BaseWebSocket
except ImportError:  # uvicorn without the websockets library: its own choice, without acknowledgements
    _BaseWebSocket = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

WS_PING_S = 1.0  # a client's WebSocket stack answers a ping once it read everything before it: an acknowledgement
WS_PING_TIMEOUT_S = 20.0  # uvicorn's own close (1011) for a ping left unanswered; the application closes sooner



def _plain(status: str, text: str) -> bytes:
    body = text.encode() + b"\n"
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


_408 = _plain("408 Request Timeout", "request header timeout")
_431 = _plain("431 Request Header Fields Too Large", "request head too large")


class _IdleConnections:
    """The server's connections without a request in progress, oldest first, in two sets: fresh ones (idle for
    less than `grace_s`) and settled ones. A connection that was just accepted has had no chance to send its head
    yet (a burst of clients connects before any of them writes), so it is no evidence of an idle client: only
    settled ones count against `limit`, the oldest closed first. Fresh ones are closed too, oldest first, when
    the server holds `ceiling` connections (uvicorn's limit_concurrency), where the next request would get 503."""

    def __init__(self, limit: int, grace_s: float, ceiling: int) -> None:
        self.limit = limit
        self.grace_s = grace_s
        self.ceiling = ceiling
        self._fresh: OrderedDict[GuardedProtocol, asyncio.TimerHandle] = OrderedDict()
        self._settled: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.evicted = 0

    def add(self, conn: GuardedProtocol, connections: int) -> None:
        """`conn` became idle; `connections`: how many the server holds now, this one included."""
        self.discard(conn)
        self._fresh[conn] = conn.loop.call_later(self.grace_s, self._settle, conn)
        while connections >= self.ceiling and (self._settled or len(self._fresh) > 1):
            self._evict(next(iter(self._settled or self._fresh)))
            connections -= 1

    def _settle(self, conn: GuardedProtocol) -> None:
        if self._fresh.pop(conn, None) is None:
            return
        self._settled[conn] = None
        while len(self._settled) > self.limit:
            self._evict(next(iter(self._settled)))

    def _evict(self, conn: GuardedProtocol) -> None:
        self.discard(conn)
        self.evicted += 1
        conn.close_idle()

    def discard(self, conn: GuardedProtocol) -> None:
        handle = self._fresh.pop(conn, None)
        if handle is not None:
            handle.cancel()
        self._settled.pop(conn, None)

    def __len__(self) -> int:
        return len(self._fresh) + len(self._settled)


class GuardedProtocol(_BaseProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol with a header deadline, a head size cap and a cap on idle connections.
    `limits` and `idle` are set on the subclass `guarded_protocol` makes for one server."""

    limits: HttpSettings
    idle: _IdleConnections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._await_request()

    def _await_request(self) -> None:
        """No request in progress: its head must come within header_timeout_s."""
        self._head_bytes = 0
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)
        self.idle.add(self, len(self.connections))

    def _request_started(self) -> None:
        self._cancel_deadline()
        self.idle.discard(self)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.get_protocol() is not self:  # upgraded to a WebSocket: no longer an HTTP connection
            self._request_started()
        elif self._deadline is not None:  # waiting for a request's head
            if self._in_request():
                self._request_started()
            else:
                self._head_bytes += len(data)
                if self._head_bytes > self.limits.max_header_kb * 1024:
                    self._refuse(_431)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._in_request():  # a pipelined request is already running
            self._request_started()
        else:
            self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.idle.discard(self)
        super().connection_lost(exc)

    def _header_timeout(self) -> None:
        self._deadline = None
        self._refuse(_408)

    def _refuse(self, response: bytes) -> None:
        self._cancel_deadline()
        self.idle.discard(self)
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def close_idle(self) -> None:
        """Evicted from the idle set (too many idle connections): close, as an idle keep-alive would be."""
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.close()
        # The transport reports the loss on a later loop turn; a request already read in this turn would still
        # count this connection against limit_concurrency and get 503. It holds nothing from here on.
        self.connections.discard(self)


def guarded_protocol(limits: HttpSettings) -> type[GuardedProtocol]:
    """A GuardedProtocol class for one server: its own idle set and limits."""
    idle = _IdleConnections(limits.max_idle_connections, limits.idle_grace_s, limits.max_connections)
    return type("GuardedHTTP", (GuardedProtocol,), {"limits": limits, "idle": idle})


class BodyDeadline:
    """ASGI middleware: deadlines on reading a request body (see the module docstring). When one passes, the
    client gets 408 with `connection: close` (if no response started yet) and the app's next receive() says
    `http.disconnect`; whatever the app sends after that is dropped."""

    def __init__(self, app: ASGIApp, limits: HttpSettings) -> None:
        self.app = app
        self.idle_s = limits.body_idle_timeout_s
        self.min_rate = limits.body_min_rate_kbps * 1000  # bytes/s
        self.grace_s = limits.body_grace_s
        self.total_s = limits.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        got = 0
        body_done = False
        cut: str | None = None
        responded = False

        async def send_guarded(message: Message) -> None:
            nonlocal responded
            if cut is not None:
                return  # the 408 went out and the connection is closing
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        def wait_s(now: float) -> tuple[float, str]:
            limits = [(self.idle_s, f"no body data for {self.idle_s:g} s"),
                      (start + self.total_s - now, f"the body took longer than {self.total_s:g} s")]
            if self.min_rate > 0:
                limits.append((start + max(self.grace_s, got / self.min_rate) - now,
                               f"the body arrived slower than {self.min_rate / 1000:g} kB/s"))
            return min(limits)

        async def receive_guarded() -> Message:
            nonlocal got, body_done, cut
            if cut is not None:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            timeout, why = wait_s(time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), max(timeout, 0.0))
            except TimeoutError:
                cut = why
                log.warning("request body cut off on %s %s: %s", scope.get("method"), scope.get("path"), why)
                if not responded:
                    detail = f'{{"detail": "request body timeout: {why}"}}'.encode()
                    await send({"type": "http.response.start", "status": 408,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(detail)).encode()),
                                            (b"connection", b"close")]})
                    await send({"type": "http.response.body", "body": detail})
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                got += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        await self.app(scope, receive_guarded, send_guarded)


if _BaseWebSocket is not None:
    class AckedWebSocket(_BaseWebSocket):
        """uvicorn's WebSocket protocol (pinging every WS_PING_S) that tells the application how long its client
        has left a ping unanswered. A pong comes only after the client read everything sent before the ping, so
        this is the age of the oldest data the client has not read, whatever the kernels on the way buffer.
        The application finds `unacknowledged_s` on the protocol its `send` belongs to (live.SocketBuffers)."""

        def unacknowledged_s(self) -> float:
            if self.pending_ping_payload is None:
                return 0.0
            return max(0.0, self.loop.time() - self.ping_sent_at)


def server_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's Config for `app` with the connection limits of `settings.http` (overrides: e.g. port=0)."""
    limits = settings.http
    kwargs: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_config": None,
        "http": guarded_protocol(limits),
        "limit_concurrency": limits.max_connections,
        "timeout_keep_alive": limits.keep_alive_s,
        "h11_max_incomplete_event_size": limits.max_header_kb * 1024,
        "timeout_graceful_shutdown": limits.graceful_shutdown_s,
        "ws_per_message_deflate": False, "ws_ping_interval": WS_PING_S, "ws_ping_timeout": WS_PING_TIMEOUT_S}
    if _BaseWebSocket is not None:
        kwargs["ws"] = AckedWebSocket
    kwargs.update(overrides)
    return uvicorn.Config(BodyDeadline(app, limits), **kwargs)
