"""Fan pipeline messages (from worker threads) out to WebSocket clients (on the asyncio loop).

`Hub.publish` is the pipeline listener: it only hands the message to the loop with call_soon_threadsafe, so
a worker thread never waits on a client. On the loop each subscriber has a bounded outbox:
- score messages beyond `max_scores` pending are dropped and counted (the client sees the count);
- event and camera messages are never dropped: if more than `max_events` are pending the subscriber is marked
  overflowed and its connection is closed with CLOSE_RESUME, so the client reconnects with resume_from
  and gets the missed events from the store.
Every subscriber receives the same `Published` item for a message, so its wire form is encoded once.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .frames import CameraMessage, EventMessage, ScoreMessage

log = logging.getLogger(__name__)

Message = ScoreMessage | EventMessage | CameraMessage
CLOSE_RESUME = 4000  # "you fell behind on events: reconnect with resume_from=<last seq>"


@dataclass(eq=False)
class Published:
    """One published message as every subscriber receives it. `wire` caches its encoding: the first connection
    that sends it stores it there and the others reuse it (loop thread only)."""

    msg: Message
    wire: str | None = None


@dataclass(eq=False)  # identity hashing: subscribers live in a set
class Subscriber:
    cameras: frozenset[str] | None = None  # None = all cameras
    scores: bool = True
    events: bool = True
    max_scores: int = 64
    max_events: int = 1024
    outbox: deque[Published] = field(default_factory=deque)
    pending_scores: int = 0
    pending_events: int = 0
    dropped_scores: int = 0
    overflowed: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    on_overflow: Callable[[], None] | None = None  # the connection closes itself (even mid-send)

    def wants(self, msg: Message) -> bool:
        if self.cameras is not None and _camera_of(msg) not in self.cameras:
            return False
        if isinstance(msg, CameraMessage):  # rare and small: every subscriber of the camera gets them
            return True
        return self.events if isinstance(msg, EventMessage) else self.scores

    def offer(self, item: Published) -> None:
        """Loop thread only."""
        if self.overflowed:
            return
        if _kept(item.msg):
            if self.pending_events >= self.max_events:
                self.overflowed = True
                if self.on_overflow is not None:
                    self.on_overflow()
            else:
                self.pending_events += 1
                self.outbox.append(item)
        elif self.pending_scores >= self.max_scores:
            self.dropped_scores += 1
        else:
            self.pending_scores += 1
            self.outbox.append(item)
        self.wakeup.set()

    async def get(self, timeout: float | None = None) -> Published | None:
        """Next message, or None once the subscriber overflowed (the caller closes the connection); TimeoutError
        when none came within `timeout` seconds. The timeout is a timer on the loop, not asyncio.wait_for, which
        before Python 3.12 creates a task per call: one per message and connection."""
        if not self.outbox and not self.overflowed:
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = True
                self.wakeup.set()

            timer = None if timeout is None else asyncio.get_running_loop().call_later(timeout, expire)
            try:
                while not self.outbox and not self.overflowed:
                    if expired:
                        raise TimeoutError
                    self.wakeup.clear()
                    await self.wakeup.wait()
            finally:
                if timer is not None:
                    timer.cancel()
        if self.overflowed:
            return None
        item = self.outbox.popleft()
        if _kept(item.msg):
            self.pending_events -= 1
        else:
            self.pending_scores -= 1
        return item

    def unget(self, item: Published) -> None:
        """Put back a message taken with get() that could not be sent (it is first again)."""
        self.outbox.appendleft(item)
        if _kept(item.msg):
            self.pending_events += 1
        else:
            self.pending_scores += 1

    def drop_pending_scores(self) -> int:
        """The connection closes: its queued score messages will never be sent. Counted as dropped; how many."""
        n = self.pending_scores
        self.outbox = deque(item for item in self.outbox if _kept(item.msg))
        self.pending_scores = 0
        self.dropped_scores += n
        return n


def _kept(msg: Message) -> bool:
    """Event and camera messages are never dropped (counted in pending_events); score messages may be."""
    return isinstance(msg, (EventMessage, CameraMessage))


def _camera_of(msg: Message) -> str:
    return msg.event.camera_id if isinstance(msg, EventMessage) else msg.camera_id


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop, *,
                 on_dispatch: Callable[[Message], None] | None = None) -> None:
        self._loop = loop
        self._subs: set[Subscriber] = set()
        self._on_dispatch = on_dispatch  # sees every message as it reaches the connections (latency metrics)
        self.published = 0
        self.slow_closes = 0  # connections closed with CLOSE_RESUME because the client fell behind
        self.dropped_scores = 0  # all connections ever, unlike the per-connection counts (a Prometheus counter)

    def publish(self, msg: Message) -> None:
        """Pipeline listener; called from any thread."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown: nobody is listening any more
            self._loop.call_soon_threadsafe(self._dispatch, msg)

    def _dispatch(self, msg: Message) -> None:
        self.published += 1
        if self._on_dispatch is not None:
            try:
                self._on_dispatch(msg)
            except Exception:  # a metrics bug must not keep the message from the clients
                log.exception("dispatch hook failed")
        item = Published(msg)
        for sub in self._subs:
            if sub.wants(msg):
                dropped = sub.dropped_scores
                sub.offer(item)
                self.dropped_scores += sub.dropped_scores - dropped

    def fell_behind(self, sub: Subscriber) -> None:
        """`sub`'s connection is closed with CLOSE_RESUME because its client fell behind: counted, and so are the
        score messages still queued for it (the events it resumes from the store)."""
        self.slow_closes += 1
        self.dropped_scores += sub.drop_pending_scores()

    def subscribe(self, sub: Subscriber) -> Callable[[], None]:
        """Loop thread only. Returns the unsubscribe function."""
        self._subs.add(sub)
        return lambda: self._subs.discard(sub)

    def subscribers(self) -> tuple[Subscriber, ...]:
        return tuple(self._subs)

    def stats(self) -> dict[str, int]:
        subs = self.subscribers()
        return {"clients": len(subs), "published": self.published,
                "dropped_scores": sum(s.dropped_scores for s in subs), "dropped_scores_total": self.dropped_scores,
                "slow_closes": self.slow_closes}
