"""Units of the API layer: the WebSocket hub (thread -> loop hand-off, filters, bounded backlogs), API key rules."""
from __future__ import annotations

import asyncio
import threading

import pytest

from service.frames import Event, EventMessage, ScoreMessage
from service.hub import Hub, Subscriber


def score(cam: str = "a", i: int = 0) -> ScoreMessage:
    return ScoreMessage(cam, i, 1.0, 0.5, 0.5, 30.0, 25.0, 0.1, 0.1, 0.0, 0.2, 5.0)


def event(seq: int, cam: str = "a") -> EventMessage:
    return EventMessage(seq, "start", Event(f"e{seq}", cam, 1.0, None, 6.0, 1.0, None, None, 1))


@pytest.mark.timeout(10)
def test_publish_from_threads_reaches_matching_subscribers_in_order() -> None:
    async def main() -> tuple[list[object], list[object]]:
        hub = Hub(asyncio.get_running_loop())
        only_a_events = Subscriber(cameras=frozenset({"a"}), scores=False)
        everything = Subscriber(max_scores=10_000)
        hub.subscribe(only_a_events)
        hub.subscribe(everything)

        def worker() -> None:
            for i in range(100):
                hub.publish(score("a" if i % 2 else "b", i))
                if i % 10 == 0:
                    hub.publish(event(i // 10 + 1, "a" if i % 20 == 0 else "b"))

        t = threading.Thread(target=worker)
        t.start()
        await asyncio.to_thread(t.join)
        await asyncio.sleep(0.05)  # let the loop run the scheduled dispatches
        return list(only_a_events.outbox), list(everything.outbox)

    only_a, everything = asyncio.run(main())
    assert [m.seq for m in only_a] == [1, 3, 5, 7, 9]  # type: ignore[attr-defined]
    assert len(everything) == 110
    assert [m.frame_index for m in everything if isinstance(m, ScoreMessage)] == list(range(100))


@pytest.mark.timeout(10)
def test_slow_client_drops_scores_counted_but_overflows_on_events() -> None:
    async def main() -> None:
        sub = Subscriber(max_scores=5, max_events=3)
        overflowed: list[bool] = []
        sub.on_overflow = lambda: overflowed.append(True)
        for i in range(12):
            sub.offer(score(i=i))
        assert sub.pending_scores == 5 and sub.dropped_scores == 7
        got = [await sub.get() for _ in range(5)]
        assert [m.frame_index for m in got] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
        for seq in range(1, 4):
            sub.offer(event(seq))
        assert not sub.overflowed
        sub.offer(event(4))  # the fourth pending event: never dropped silently -> overflow
        assert sub.overflowed and overflowed == [True]
        assert await sub.get() is None  # the connection closes and the client resumes from the store

    asyncio.run(main())


def test_api_key_rules() -> None:
    from pydantic import SecretStr

    from service.api.security import key_ok, presented_key

    assert key_ok(None, None) and key_ok(SecretStr(""), None)  # empty = off (compose passes FFP_API_KEY=)
    assert not key_ok(SecretStr("k"), None) and not key_ok(SecretStr("k"), "K") and key_ok(SecretStr("k"), "k")
    assert presented_key({"authorization": "Bearer  k "}) == "k"
    assert presented_key({"authorization": "Basic k"}) is None
    assert presented_key({}, {"api_key": "q"}) == "q" and presented_key({}, None) is None
