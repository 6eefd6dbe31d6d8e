"""WebSocket /v1/ws: live scores and events.

Protocol (JSON text frames; the models are in service/api/schemas.py):

Connect to `/v1/ws?cameras=a,b&kinds=scores,events&resume_from=N&api_key=K`; every parameter is optional
(default: every camera, both kinds, no replay). The key may also come as an `X-API-Key` or
`Authorization: Bearer` header. With resume_from the server first sends the n stored event messages after
it (`replay: true`); then, in every case, `{"type": "subscribed", ..., "replayed": n}` marks the start of
the live stream:
- `{"type": "score", "camera_id", "frame_index", "ts", "score", "smoothed", "armed", "psnr", ...,
  "dropped_scores"}` for every scored frame (`score`: calibrated anomaly score, higher = more anomalous;
  `armed: false`: the camera has no model of its own yet and the score raises no alert);
- `{"type": "event", "seq", "kind": "start"|"update"|"end", "replay", "event": {...}}` for every event message;
- `{"type": "camera", "camera_id", "mode", "model", "learning"}` when a camera's mode (learning, training,
  armed, unarmed) or model changes, whatever `kinds` (never dropped, like events);
- `{"type": "heartbeat", "ts", "dropped_scores", "last_seq"}` when nothing else was sent for HEARTBEAT_S.
The client may send `{"type": "subscribe", "cameras": [...]|null, "kinds": [...], "resume_from": N}` at any
time to change its subscription (with resume_from: replay stored events after N first). Anything else (a
binary frame, text that is not such a message, resume_from outside 0..2**63-1) closes with 4400 and a reason.

Resume: keep the last event `seq` seen and reconnect with `resume_from=<seq>`. The server registers the
connection for live messages *before* reading the store, then sends every stored message after N (marked
`replay: true`), then the live ones, skipping any seq it already sent: no gap and no duplicate at the seam.

Slow clients never slow the pipeline. Each connection has a bounded backlog, and what the kernel buffers for it
is bounded too (`SocketBuffers`: SEND_BUFFER_BYTES), so a client that reads too slowly is noticed within
seconds. Score messages beyond the backlog are dropped and counted (`dropped_scores` in the next
score/heartbeat message). Event messages are never dropped silently: when a client's event backlog overflows,
or one send to it waits longer than SEND_TIMEOUT_S (it stopped reading), the server closes the connection with
code 4000 (CLOSE_RESUME) and the client should reconnect with resume_from. Close codes: 1008 = missing or bad
API key, or an Origin not allowed; 4400 = invalid subscription or message; 4000 = the client fell behind,
resume; 1013 = the service is starting or stopping.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..frames import CameraMessage, EventMessage, ScoreMessage
from ..hub import CLOSE_RESUME, Published, Subscriber
from .deps import AppState
from .schemas import (
    CameraWsMessage,
    EventPublic,
    EventWsMessage,
    HeartbeatMessage,
    ScoreWsMessage,
    SubscribedMessage,
    SubscribeRequest,
)
from .security import key_ok, origin_allowed, presented_key

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

HEARTBEAT_S = 5.0
MAX_PENDING_SCORES = 256
MAX_PENDING_EVENTS = 1024
REPLAY_PAGE = 500
CLOSE_POLICY = 1008
CLOSE_BAD_REQUEST = 4400
SEND_TIMEOUT_S = 5.0  # one send blocked this long (every buffer on the way full): the client stopped reading
CLOSE_TIMEOUT_S = 10.0  # the close frame waits behind the full buffers this long, then the socket is dropped
SEND_BUFFER_BYTES = 64 * 1024  # the kernel's send buffer per WebSocket (it doubles it for its bookkeeping)
TRANSPORT_KEY = "ffp.transport"  # scope key under which SocketBuffers leaves the connection's transport


class NotReading(Exception):
    """A send to the client did not complete within SEND_TIMEOUT_S."""


class BadMessage(Exception):
    """The client sent something that is not a subscribe message: close with 4400 and this reason."""


class SocketBuffers:
    """ASGI middleware: bound the kernel's send buffer of every WebSocket connection.

    Linux sizes a socket's send buffer by itself, up to megabytes, and the client's receive buffer adds more: a
    client that stopped reading would absorb minutes of score messages before a send blocks, and the server
    would learn about it only from the keepalive ping (1011 after ping interval + timeout). With a small buffer
    a send blocks within seconds, so the backlog, `dropped_scores` and the 4000 close work as documented.
    ASGI does not expose the socket: uvicorn's `send` is a method of its protocol object, which holds the
    transport; under another server nothing is changed."""

    def __init__(self, app: ASGIApp, send_buffer: int = SEND_BUFFER_BYTES) -> None:
        self.app, self.send_buffer = app, send_buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None and hasattr(transport, "get_extra_info"):  # asyncio's or uvloop's
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
                scope = {**scope, TRANSPORT_KEY: transport}
        await self.app(scope, receive, send)


def event_json(msg: EventMessage, *, replay: bool) -> str:
    return EventWsMessage(seq=msg.seq, kind=msg.kind, replay=replay,
                          event=EventPublic.from_event(msg.event)).model_dump_json()


def camera_json(msg: CameraMessage) -> str:
    return CameraWsMessage.model_validate({"camera_id": msg.camera_id, "mode": msg.mode, "model": msg.model,
                                           "learning": msg.learning}).model_dump_json()


def score_json_head(msg: ScoreMessage) -> str:
    """The score message's JSON without its last field, dropped_scores, the one that differs per connection:
    `score_json` completes it. Non-finite floats are sent as null."""
    model = ScoreWsMessage.model_validate({
        "camera_id": msg.camera_id, "frame_index": msg.frame_index, "ts": msg.ts, "score": msg.score,
        "smoothed": msg.smoothed, "armed": msg.armed, **msg.metrics, "latency_ms": msg.latency_ms, "dropped_scores": 0})
    return model.model_dump_json(exclude={"dropped_scores"})[:-1]


def score_json(head: str, dropped_scores: int) -> str:
    return f'{head},"dropped_scores":{dropped_scores}}}'


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p)[:32] for p in err.get("loc", ()))
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def _query_subscription(ws: WebSocket) -> SubscribeRequest:
    q = ws.query_params

    def listed(name: str) -> list[str] | None:
        vals = [v for raw in q.getlist(name) for v in raw.split(",") if v]
        return vals or None

    data: dict[str, Any] = {"cameras": listed("cameras")}
    if listed("kinds"):
        data["kinds"] = listed("kinds")
    if q.get("resume_from") not in (None, ""):
        data["resume_from"] = q.get("resume_from")
    return SubscribeRequest.model_validate(data)


class Connection:
    """One WebSocket client: its hub subscriber, the replay/dedup state, and the single writer."""

    def __init__(self, ws: WebSocket, state: AppState) -> None:
        self.ws, self.state = ws, state
        self.sub = Subscriber(max_scores=MAX_PENDING_SCORES, max_events=MAX_PENDING_EVENTS)
        self.sent_seqs: set[int] = set()  # seqs sent by replay; live copies of them are skipped
        self.floor = -1  # the client has seen every seq <= floor
        self.last_seq: int | None = None
        self.send_lock = asyncio.Lock()  # replay (reader task) and live sends (writer task) never interleave
        self.sender: asyncio.Task[Any] | None = None  # the task in send(), and since when
        self.send_started: float | None = None
        self.stuck = False  # a send stayed blocked for SEND_TIMEOUT_S: the client stopped reading

    async def send(self, text: str) -> None:
        """Send one message; NotReading when watch_sends found it blocked for SEND_TIMEOUT_S. (One watcher per
        connection instead of a timeout per send: wait_for would create a task per message and client.)"""
        self.sender, self.send_started = asyncio.current_task(), time.monotonic()
        try:
            await self.ws.send_text(text)
        except asyncio.CancelledError:
            if not self.stuck:
                raise
            if self.sender is not None and hasattr(self.sender, "uncancel"):  # Python 3.11+
                self.sender.uncancel()
            raise NotReading from None
        finally:
            self.send_started = None

    async def watch_sends(self) -> None:
        while True:
            await asyncio.sleep(SEND_TIMEOUT_S / 10)
            started = self.send_started
            if started is not None and time.monotonic() - started > SEND_TIMEOUT_S and self.sender is not None:
                self.stuck = True
                self.sender.cancel()
                return

    def _sending_event(self, seq: int) -> None:
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)

    def encode(self, item: Published) -> str | None:
        """A live message's JSON for this connection (None: an event the replay already sent). The part every
        connection shares is encoded once, by the first, and kept in item.wire."""
        msg = item.msg
        if isinstance(msg, EventMessage):
            if msg.seq <= self.floor or msg.seq in self.sent_seqs:
                return None
            self._sending_event(msg.seq)
            if item.wire is None:
                item.wire = event_json(msg, replay=False)
            return item.wire
        if isinstance(msg, CameraMessage):
            if item.wire is None:
                item.wire = camera_json(msg)
            return item.wire
        if item.wire is None:
            item.wire = score_json_head(msg)
        return score_json(item.wire, self.sub.dropped_scores)

    async def subscribe(self, req: SubscribeRequest) -> None:
        assert self.state.store is not None
        async with self.send_lock:
            self.sub.cameras = None if req.cameras is None else frozenset(req.cameras)
            self.sub.scores, self.sub.events = "scores" in req.kinds, "events" in req.kinds
            replayed = 0
            if req.resume_from is not None and self.sub.events:
                # The subscriber is already registered with the hub, so anything stored after this read
                # also arrives live; anything stored before it is read here. Together: no gap.
                self.floor = max(self.floor, req.resume_from)
                after = req.resume_from
                while True:
                    page = await run_in_threadpool(self.state.store.messages_since, after, req.cameras,
                                                   limit=REPLAY_PAGE)
                    for m in page:
                        self.sent_seqs.add(m.seq)
                        self._sending_event(m.seq)
                        await self.send(event_json(m, replay=True))
                    replayed += len(page)
                    if len(page) < REPLAY_PAGE:
                        break
                    after = page[-1].seq
            await self.send(SubscribedMessage(cameras=req.cameras, kinds=list(req.kinds), resume_from=req.resume_from,
                                              replayed=replayed).model_dump_json())

    async def write_loop(self) -> None:
        while True:
            try:
                item = await asyncio.wait_for(self.sub.get(), HEARTBEAT_S)
            except asyncio.TimeoutError:
                async with self.send_lock:
                    await self.send(HeartbeatMessage(ts=time.time(), dropped_scores=self.sub.dropped_scores,
                                                     last_seq=self.last_seq).model_dump_json())
                continue
            if item is None:  # event backlog overflowed: live() closes with CLOSE_RESUME
                return
            async with self.send_lock:
                if self.sub.wants(item.msg):  # the subscription may have changed since it was queued
                    out = self.encode(item)
                    if out is not None:
                        await self.send(out)

    async def read_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            text = message.get("text")
            if text is None:
                raise BadMessage("binary frames are not accepted: send JSON text")
            try:
                req = SubscribeRequest.model_validate_json(text)
            except ValidationError as e:
                raise BadMessage(f"invalid message ({_first_error(e)}); expected a subscribe message") from None
            await self.subscribe(req)

    def resume_reason(self) -> str:
        return f"client fell behind; reconnect with resume_from={self.last_seq or 0}"


@router.websocket("/v1/ws")
async def live(ws: WebSocket) -> None:
    state: AppState = ws.app.state.ffp
    await ws.accept()  # accept first so the refusal carries a close code instead of a bare HTTP 403
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), state.settings.allowed_origins):
        await ws.close(CLOSE_POLICY, "origin not allowed (allowed_origins)")
        return
    if not key_ok(state.settings.api_key, presented_key(ws.headers, ws.query_params)):
        await ws.close(CLOSE_POLICY, "missing or invalid API key")
        return
    if state.hub is None or state.store is None:
        await ws.close(1013, "the service is starting or stopping")
        return
    try:
        first = _query_subscription(ws)
    except ValidationError as e:
        await ws.close(CLOSE_BAD_REQUEST, f"invalid subscription: {_first_error(e)}"[:120])
        return
    hub = state.hub
    conn = Connection(ws, state)
    unsubscribe = hub.subscribe(conn.sub)
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(conn.watch_sends())]
    close: tuple[int, str] | None = None
    try:
        await conn.subscribe(first)
        writer = asyncio.create_task(conn.write_loop())
        tasks += [writer, asyncio.create_task(conn.read_loop())]

        def overflow() -> None:  # a client stuck mid-send must not hold its backlog: cancel the writer
            writer.cancel()

        conn.sub.on_overflow = overflow
        done, _ = await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
        if conn.sub.overflowed:
            raise NotReading
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    except NotReading:
        hub.slow_closes += 1
        log.warning("websocket client fell behind; closing it with %d so it resumes from the store", CLOSE_RESUME)
        close = (CLOSE_RESUME, conn.resume_reason())
    except BadMessage as e:
        close = (CLOSE_BAD_REQUEST, str(e)[:120])
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass  # the client went away (RuntimeError: sending on a closed socket)
    finally:
        unsubscribe()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if close is not None:
        await _close(ws, *close)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    """Send the close frame; if it cannot get out (the buffers are full and stay full), drop the connection so
    it holds nothing any more."""
    try:
        await asyncio.wait_for(ws.close(code, reason), CLOSE_TIMEOUT_S)
    except asyncio.TimeoutError:
        transport = ws.scope.get(TRANSPORT_KEY)
        if transport is not None:
            transport.abort()
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
