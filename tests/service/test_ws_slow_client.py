"""A client that stops reading must not hold up anything, and must not lose events silently: its event
backlog overflows and the server closes it with 4000 (reconnect with resume_from). The socket is a fake whose
send never completes, which a real client can only produce after filling megabytes of TCP buffers."""
from __future__ import annotations

import asyncio

import pytest

from service.api import live
from service.api.deps import AppState
from service.frames import REPORTED_METRICS, Event, EventMessage, ScoreMessage
from service.hub import CLOSE_RESUME, Hub
from service.settings import load_settings
from service.store import EventStore


class StuckSocket:
    """The parts of starlette's WebSocket that live() uses; the second send blocks forever."""

    def __init__(self, state: AppState) -> None:
        self.app = type("App", (), {"state": type("S", (), {"ffp": state})()})()
        self.headers: dict[str, str] = {}
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

    async def receive_text(self) -> str:
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
