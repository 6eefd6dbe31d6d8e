"""EventRecorder alone, on a real SQLite file: start/update/end events with their peak images, written atomically,
and retention at start and then at most once per interval."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from model import EventUpdate
from service.recorder import EventRecorder
from service.store import EventStore

pytestmark = pytest.mark.timeout(20)


def update(kind: str, event_id: str, end_ts: float | None = None, peak: float = 6.0,
           cam: str = "cam") -> EventUpdate:
    return EventUpdate(kind, event_id, cam, 100.0, end_ts, peak, 100.5, 4)  # type: ignore[arg-type]


def frame(value: int) -> np.ndarray:
    return np.full((48, 64, 3), value, np.uint8)


def read_jpeg(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, f"not a readable image: {path}"
    return img


def test_events_are_stored_with_their_peak_images_written_atomically(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(src: Path, dst: Path) -> None:
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("service.snapshots.os.replace", spy_replace)
    store = EventStore.open(tmp_path)
    rec = EventRecorder(store, tmp_path, max_events=None, max_age_days=None)
    rec.start()
    batch_heatmaps = np.zeros((2, 12, 16), np.float32)
    batch_heatmaps[0, 2:6, 3:9] = 0.8
    rec.set_peak("cam", frame(40), batch_heatmaps[0])
    batch_heatmaps[0] = 0.0  # the next batch reuses the array: the recorder kept its own copy
    start = rec.record(update("start", "e1"))
    snap, heat = start.event.snapshot_path, start.event.heatmap_path
    assert snap == "events/cam/e1-snapshot.jpg" and heat == "events/cam/e1-heatmap.jpg"
    assert [(s.parent, s.name.startswith("."), d) for s, d in replaced] == [
        (tmp_path / "events" / "cam", True, tmp_path / snap), (tmp_path / "events" / "cam", True, tmp_path / heat)]
    heat_img = read_jpeg(tmp_path / heat)
    assert read_jpeg(tmp_path / snap).shape == (48, 64, 3) and heat_img.shape == (48, 64, 3)
    assert heat_img[:, :, 2].max() > heat_img[:, :, 2].min() + 50, "the heatmap's hot spot was lost"

    n = len(replaced)
    same = rec.record(update("update", "e1", peak=6.0))  # no new peak: the images are not written again
    assert len(replaced) == n and (same.event.snapshot_path, same.event.heatmap_path) == (snap, heat)
    rec.set_peak("cam", frame(200), batch_heatmaps[1])
    rec.record(update("update", "e1", peak=9.0))
    # the new peak frame (the median: the caption band and the box cover a corner of this small frame)
    assert len(replaced) == n + 2 and np.median(read_jpeg(tmp_path / snap)) > 150
    end = rec.record(update("end", "e1", end_ts=103.0, peak=9.0))

    assert [m.kind for m in store.messages_since(0)] == ["start", "update", "update", "end"]
    assert start.seq < same.seq < end.seq
    got = store.get("e1")
    assert got is not None and got.end_ts == 103.0 and got.peak_score == 9.0 and got.snapshot_path == snap
    assert not [p for p in (tmp_path / "events" / "cam").iterdir() if p.name.startswith(".")]
    nxt = rec.record(update("start", "e2"))  # the ended event's images do not carry over
    assert nxt.event.snapshot_path is None and nxt.event.heatmap_path is None
    rec.set_peak("cam", frame(90), batch_heatmaps[1])
    rec.forget("cam")  # a removed camera's unwritten peak is dropped
    assert rec.record(update("end", "e2", end_ts=104.0)).event.snapshot_path is None
    store.close()


def test_an_image_write_failure_still_records_the_event(tmp_path: Path) -> None:
    store = EventStore.open(tmp_path)
    (tmp_path / "events" / "cam").write_text("a file where the camera's folder should be")
    rec = EventRecorder(store, tmp_path, max_events=None, max_age_days=None)
    rec.set_peak("cam", frame(40), np.zeros((12, 16), np.float32))
    msg = rec.record(update("start", "e1"))
    assert msg.event.snapshot_path is None and store.get("e1") is not None
    store.close()


def test_start_closes_dangling_events_and_retention_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    wall, mono = [100_000.0], [50.0]
    store = EventStore.open(tmp_path, clock=lambda: wall[0])
    rec = EventRecorder(store, tmp_path, max_events=3, max_age_days=1.0, retention_every_s=60.0,
                        monotonic=lambda: mono[0])
    for i in range(3):
        rec.set_peak("cam", frame(10 * i), np.zeros((12, 16), np.float32))
        rec.record(EventUpdate("start", f"e{i}", "cam", 99_000.0 + i, None, 5.0, 99_000.5 + i, 1))
        rec.record(EventUpdate("end", f"e{i}", "cam", 99_000.0 + i, 99_001.0 + i, 5.0, 99_000.5 + i, 1))
    rec.record(EventUpdate("start", "open", "cam", 99_500.0, None, 5.0, 99_500.5, 1))  # left open by a crash
    assert (tmp_path / "events" / "cam" / "e0-snapshot.jpg").is_file()

    rec.start()  # repair, then retention at once: the oldest finished event goes, with its images
    assert store.get("open") is not None and store.get("open").end_ts is not None  # type: ignore[union-attr]
    assert sorted(e.id for e in store.list_events()) == ["e1", "e2", "open"]
    assert not (tmp_path / "events" / "cam" / "e0-snapshot.jpg").exists()

    wall[0] += 2 * 86400  # everything is older than max_age_days now
    mono[0] += 59.0
    rec.apply_retention()  # within the interval: nothing happens
    assert store.count() == 3
    mono[0] += 1.0
    rec.apply_retention()
    assert store.count() == 0
    assert not [p for p in (tmp_path / "events" / "cam").iterdir()]
    store.close()
