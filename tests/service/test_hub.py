"""Units of the API layer: the WebSocket hub (thread -> loop hand-off, filters, bounded backlogs), API key rules."""
from __future__ import annotations

import asyncio
import threading

import pytest

from service.frames import REPORTED_METRICS, CameraMessage, Event, EventMessage, ScoreMessage
from service.hub import Hub, Published, Subscriber


def score(cam: str = "a", i: int = 0) -> ScoreMessage:
    return ScoreMessage(cam, i, 1.0, 0.5, 0.5, dict.fromkeys(REPORTED_METRICS, 0.1), 5.0)


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
        a_items, all_items = list(only_a_events.outbox), list(everything.outbox)
        # both subscribers hold the same item for an event they both receive: one encoding serves them
        assert all(any(i is j for j in all_items) for i in a_items)
        return [i.msg for i in a_items], [i.msg for i in all_items]

    only_a, everything = asyncio.run(main())
    assert [m.seq for m in only_a] == [1, 3, 5, 7, 9]  # type: ignore[union-attr]
    assert len(everything) == 110
    assert [m.frame_index for m in everything if isinstance(m, ScoreMessage)] == list(range(100))


@pytest.mark.timeout(10)
def test_slow_client_drops_scores_counted_but_overflows_on_events() -> None:
    async def main() -> None:
        sub = Subscriber(max_scores=5, max_events=3)
        overflowed: list[bool] = []
        sub.on_overflow = lambda: overflowed.append(True)
        for i in range(12):
            sub.offer(Published(score(i=i)))
        assert sub.pending_scores == 5 and sub.dropped_scores == 7
        got = [await sub.get() for _ in range(5)]
        assert [m.msg.frame_index for m in got] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
        for seq in range(1, 4):
            sub.offer(Published(event(seq)))
        assert not sub.overflowed
        sub.offer(Published(event(4)))  # the fourth pending event: never dropped silently -> overflow
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


def test_schemas_carry_every_metric_of_the_scorer() -> None:
    from model.scoring import METRICS
    from service.api.schemas import FrameScore, ScoreWsMessage

    reported = [m for m in METRICS if m != "anomaly"]  # the raw anomaly is reported calibrated, as score
    assert list(REPORTED_METRICS) == reported
    assert list(FrameScore.model_fields) == ["index", "time", "score", "smoothed", *reported]
    assert list(ScoreWsMessage.model_fields) == ["type", "camera_id", "frame_index", "ts", "score", "smoothed",
                                                 "armed", *reported, "latency_ms", "dropped_scores"]


def test_wire_json_is_the_schema_models() -> None:
    import json

    from service.api.live import event_json, score_json, score_json_head
    from service.api.schemas import EventWsMessage, ScoreWsMessage

    msg = ScoreMessage("a", 3, 1.5, float("nan"), 0.25, {**dict.fromkeys(REPORTED_METRICS, 0.1), "psnr": 31.5}, 5.0)
    text = score_json(score_json_head(msg), 7)
    fields = {"camera_id": "a", "frame_index": 3, "ts": 1.5, "score": None, "smoothed": 0.25, "armed": True,
              **dict.fromkeys(REPORTED_METRICS, 0.1), "psnr": 31.5, "latency_ms": 5.0, "dropped_scores": 7}
    assert text == ScoreWsMessage.model_validate(fields).model_dump_json()  # one connection's tail, spliced on
    assert json.loads(text) == {"type": "score", **fields}  # NaN goes out as null
    ev = event(5)
    wire = json.loads(event_json(ev, replay=True))
    EventWsMessage.model_validate(wire)
    assert wire == {"type": "event", "seq": 5, "kind": "start", "replay": True, "event": {
        "id": "e5", "camera_id": "a", "type": "anomaly", "action": None, "start_ts": 1.0, "end_ts": None,
        "peak_score": 6.0, "peak_ts": 1.0, "frames": 1, "snapshot_url": None, "heatmap_url": None}}


@pytest.mark.timeout(10)
def test_get_times_out_without_a_task_and_a_slow_close_counts_the_backlog() -> None:
    async def main() -> None:
        hub = Hub(asyncio.get_running_loop())
        sub = Subscriber(max_scores=5)
        hub.subscribe(sub)
        tasks = len(asyncio.all_tasks())
        waiter = asyncio.ensure_future(sub.get(0.2))
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) == tasks + 1, "the timeout is a timer, not a task of its own"
        with pytest.raises(TimeoutError):
            await waiter
        sub.offer(Published(score(i=0)))
        assert (await sub.get(0.2)).msg.frame_index == 0  # type: ignore[union-attr]
        for i in range(1, 4):
            hub.publish(score(i=i))
        hub.publish(event(1))
        await asyncio.sleep(0.05)
        item = await sub.get(0.2)
        assert item is not None
        sub.unget(item)  # could not be sent: first again, and pending again
        assert sub.pending_scores == 3 and sub.pending_events == 1 and sub.outbox[0] is item
        hub.fell_behind(sub)
        assert hub.slow_closes == 1 and hub.dropped_scores == 3 and sub.dropped_scores == 3
        assert [type(i.msg) for i in sub.outbox] == [EventMessage] and sub.pending_scores == 0

    asyncio.run(main())


def test_a_camera_message_put_back_or_left_at_a_slow_close_counts_as_an_event() -> None:
    sub = Subscriber()
    sub.offer(Published(CameraMessage("a", "armed", "v0001", None)))
    sub.offer(Published(score()))
    item = asyncio.run(sub.get())
    assert item is not None and isinstance(item.msg, CameraMessage)
    sub.unget(item)
    assert sub.pending_events == 1 and sub.pending_scores == 1
    assert sub.drop_pending_scores() == 1
    assert [type(i.msg) for i in sub.outbox] == [CameraMessage] and sub.pending_events == 1
