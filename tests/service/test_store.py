from __future__ import annotations

from pathlib import Path

import pytest

from service.frames import Event
from service.store import EventStore

pytestmark = pytest.mark.timeout(20)


def ev(i: int, start: float, end: float | None = None, cam: str = "cam", images: bool = False) -> Event:
    snap = f"events/{cam}/e{i}-snapshot.jpg" if images else None
    heat = f"events/{cam}/e{i}-heatmap.jpg" if images else None
    return Event(f"e{i}", cam, start, end, 5.0 + i, start + 0.1, snap, heat, 3)


def test_events_and_log_survive_restart_and_dangling_events_are_closed(tmp_path: Path) -> None:
    now = [1000.0]
    store = EventStore.open(tmp_path, clock=lambda: now[0])
    m1 = store.record("start", ev(1, 990.0))
    m2 = store.record("end", ev(1, 990.0, 995.0))
    now[0] = 1010.0
    m3 = store.record("start", ev(2, 1009.0))  # the process "crashes" with e2 open
    store.close()
    assert m1.seq < m2.seq < m3.seq

    now[0] = 2000.0
    store = EventStore.open(tmp_path, clock=lambda: now[0])
    (repair,) = store.close_dangling()
    assert repair.kind == "end" and repair.seq > m3.seq
    assert store.get("e2") == ev(2, 1009.0, 1010.0)  # ended at its last update, not at restart time
    assert store.get("e1") == ev(1, 990.0, 995.0)
    assert [e.id for e in store.list_events()] == ["e2", "e1"]
    assert store.close_dangling() == []
    msgs = store.messages_since(m1.seq)
    assert [(m.seq, m.kind, m.event.id) for m in msgs] == [(m2.seq, "end", "e1"), (m3.seq, "start", "e2"),
                                                          (repair.seq, "end", "e2")]
    assert msgs[1].event.end_ts is None  # each message carries the event as it was then
    assert store.last_seq() == repair.seq
    store.close()


def test_messages_since_filters_cameras(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "x.db")
    store.record("start", ev(1, 1.0, cam="a"))
    store.record("start", ev(2, 2.0, cam="b"))
    assert [m.event.camera_id for m in store.messages_since(0, ["b"])] == ["b"]
    assert store.messages_since(0, []) == []
    assert len(store.messages_since(0)) == 2
    store.close()


def test_retention_deletes_rows_and_images(tmp_path: Path) -> None:
    now = [100_000.0]
    store = EventStore.open(tmp_path, clock=lambda: now[0])
    (tmp_path / "events" / "cam").mkdir(parents=True)
    for i in range(5):
        e = ev(i, 1000.0 * (i + 1), 1000.0 * (i + 1) + 5, images=True)
        for p in (e.snapshot_path, e.heatmap_path):
            (tmp_path / str(p)).write_bytes(b"jpeg")
        store.record("start", e)
    store.record("start", ev(9, 99_000.0))  # active: never deleted by retention
    assert store.apply_retention(max_events=3, max_age_s=None) == 2
    assert {e.id for e in store.list_events()} == {"e9", "e2", "e3", "e4"}
    assert not (tmp_path / "events/cam/e0-snapshot.jpg").exists()
    assert not (tmp_path / "events/cam/e1-heatmap.jpg").exists()
    assert (tmp_path / "events/cam/e4-heatmap.jpg").exists()
    assert store.apply_retention(max_events=None, max_age_s=95_500.0) == 2  # e2, e3 started before 4500
    assert {e.id for e in store.list_events()} == {"e9", "e4"}
    assert store.messages_since(0, ["cam"])[0].event.id in {"e4", "e9"}
    assert store.image_path("events/cam/e4-snapshot.jpg") is not None
    assert store.image_path("../x.db") is None
    store.close()


def test_memory_store_and_delete(tmp_path: Path) -> None:
    store = EventStore(":memory:")
    store.record("start", ev(1, 1.0))
    assert store.delete("e1") and not store.delete("e1")
    assert store.count() == 0
    store.close()
