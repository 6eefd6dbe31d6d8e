"""A camera whose view changes: one scene_change event (stored with its snapshot, pushed, counted, with a prompt
to relearn) and no anomaly alerts after the switch; a local anomaly still raises an anomaly alert. End to end with
a file camera (paced at its native fps), the batched scorer and a SQLite file."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import Collector, untrained_predictor

from model import Calibration, Predictor, windows_from_frames
from service.api.live import event_json
from service.frames import Event
from service.metrics import ServiceMetrics
from service.pipeline import Pipeline
from service.settings import AlertSettings, CameraSettings, LearningSettings, Settings
from service.store import EventStore
from tests.model.synthetic import write_video

pytestmark = pytest.mark.timeout(90)
FPS = 10
W, H = 160, 120
ALERTS = AlertSettings(on_threshold=4.0, off_threshold=2.5, min_duration_s=0.3, hold_s=0.5, cooldown_s=1.0)


def view_a(t: int) -> np.ndarray:
    """The camera's usual view: a smooth texture, a bright square crossing it at 3 px a frame."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = (100 + 40 * np.sin(xx / 9.0) * np.cos(yy / 11.0)).astype(np.uint8)
    x = (3 * t) % (W - 20)
    img[50:70, x:x + 20] = 230
    return img


def view_b(t: int) -> np.ndarray:
    """Another view (the camera turned): coarse stripes, two squares moving fast, which the model never saw."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = (110 + 60 * np.sign(np.sin(xx / 4.0 - yy / 6.0))).astype(np.uint8)
    for row, speed in ((20, 11), (80, -13)):
        x = (speed * t) % (W - 24)
        img[row:row + 24, x:x + 24] = 15 if speed > 0 else 245
    return img


def blob(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A local anomaly: a white blob jumping about in one corner."""
    out = img.copy()
    x, y = rng.integers(0, 40, 2)
    out[y:y + 28, x:x + 28] = 255
    return out


def copy_last_predictor(frames: list[np.ndarray]) -> Predictor:
    """An untrained lite generator with its output layer zeroed predicts the last frame, so the anomaly score is
    the frame-to-frame change; calibrated on `frames` of the usual view."""
    p = untrained_predictor(precision="fp32")
    pre = [p.preprocess(np.repeat(f[..., None], 3, 2)) for f in frames]
    windows = np.stack([w for _, w in windows_from_frames(pre, p.config) if w is not None])
    cal = Calibration.from_scores(p.score(windows).metrics(), source="tests: view a")
    # The synthetic view repeats itself exactly: widen its spread so that normal frames never look anomalous.
    std = dict(cal.std, anomaly=max(cal.std["anomaly"], 1.0))
    return p.with_calibration(Calibration(cal.mean, std, cal.quantiles, cal.frames, cal.source))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return copy_last_predictor([view_a(t) for t in range(60)])




def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_clip(tmp_path: Path, predictor: Predictor, frames: list[np.ndarray], *, auto_relearn: bool = False
             ) -> tuple[Collector, list[str], ServiceMetrics, EventStore]:
    clip = write_video(tmp_path / "cam.mp4", frames, fps=FPS)
    settings = Settings(data_dir=tmp_path / "data", alerts=ALERTS, learning=LearningSettings(auto_relearn=auto_relearn),
                        cameras=[CameraSettings(id="cam", url=str(clip), fps=FPS)])
    store = EventStore.open(settings.data_dir)
    pipe = Pipeline(settings, predictor, store)
    got, relearn, metrics = Collector(), [], ServiceMetrics()
    pipe.add_listener(got)
    pipe.add_listener(metrics.observe_event)
    pipe.on_scene_change(relearn.append)
    pipe.start()
    try:
        wait_for(lambda: pipe.get_camera("cam").state == "ended", timeout=len(frames) / FPS + 30, what="clip end")
        wait_for(lambda: len(got.scores()) >= len(frames) - 5, timeout=10, what="every window scored")
    finally:
        pipe.stop()
    return got, relearn, metrics, store


def test_a_swapped_view_raises_one_scene_change_and_no_anomaly_alert(tmp_path: Path, predictor: Predictor,
                                                                     no_thread_leak: None) -> None:
    switch = 70
    frames = [view_a(t) for t in range(switch)] + [view_b(t) for t in range(70)]
    got, relearn, metrics, store = run_clip(tmp_path, predictor, frames, auto_relearn=True)
    scores = got.scores()
    t_switch = next(m.ts for m in scores if m.frame_index == switch)
    after = [m.score for m in scores if m.ts > t_switch + 1.0 and m.score is not None]
    # Without the detector this view would alert throughout: the model finds it far from normal.
    assert np.mean(np.array(after) > ALERTS.on_threshold) > 0.8, after

    evs = got.events()
    assert [(m.kind, m.event.type) for m in evs] == [("start", "scene_change"), ("end", "scene_change")], evs
    start = evs[0].event
    assert t_switch <= start.start_ts <= t_switch + 0.5  # the new view's first frames, raised after hold_s
    assert evs[1].kind == "end" and evs[1].event.id == start.id  # closed when the clip (the camera) ended
    assert relearn == ["cam"]  # learning.auto_relearn: the relearn hook ran once
    stored = store.get(start.id)
    assert stored is not None and stored.type == "scene_change"
    assert stored.snapshot_path and (tmp_path / "data" / stored.snapshot_path).read_bytes()[:2] == b"\xff\xd8"
    assert [e.id for e in store.list_events(event_type="scene_change")] == [start.id]
    assert store.list_events(event_type="anomaly") == []
    pushed = event_json(evs[0], replay=False)
    assert '"type":"scene_change"' in pushed and '"action":"relearn"' in pushed
    text = metrics.exposition().decode()
    assert 'ffp_events_total{camera="cam",kind="start",type="scene_change"} 1.0' in text
    assert 'type="anomaly"' not in text
    # While the scene change is open the camera's scores are published, but not as alert input.
    assert all(m.smoothed is None for m in scores if m.ts > start.start_ts + 0.5)
    store.close()


def test_a_local_anomaly_raises_an_anomaly_alert_not_a_scene_change(tmp_path: Path, predictor: Predictor,
                                                                    no_thread_leak: None) -> None:
    rng = np.random.default_rng(0)
    frames = [view_a(t) for t in range(110)]
    frames[60:80] = [blob(f, rng) for f in frames[60:80]]  # 2 s in one corner
    got, relearn, _, store = run_clip(tmp_path, predictor, frames, auto_relearn=True)
    evs = got.events()
    assert [(m.kind, m.event.type) for m in evs if m.kind != "update"] == [("start", "anomaly"), ("end", "anomaly")]
    assert relearn == []
    store.close()


def test_a_database_from_before_event_types_reads_as_anomalies(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    db.executescript("""
        CREATE TABLE events (id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, start_ts REAL NOT NULL, end_ts REAL,
            peak_score REAL NOT NULL, peak_ts REAL NOT NULL, snapshot_path TEXT, heatmap_path TEXT,
            frames INTEGER NOT NULL DEFAULT 0, updated_ts REAL NOT NULL);
        INSERT INTO events VALUES ('old', 'cam', 1.0, 2.0, 5.0, 1.5, NULL, NULL, 3, 2.0);""")
    db.commit()
    db.close()
    store = EventStore.open(tmp_path)
    assert store.get("old") == Event("old", "cam", 1.0, 2.0, 5.0, 1.5, None, None, 3, "anomaly")
    store.record("start", Event("new", "cam", 3.0, None, 0.8, 3.0, None, None, 1, "scene_change"))
    assert [e.type for e in store.list_events()] == ["scene_change", "anomaly"]
    store.close()


def test_the_dashboard_labels_scene_changes() -> None:
    from service.api.dashboard import STATIC

    js = (STATIC / "dashboard.js").read_text()
    assert 'ev.type === "scene_change"' in js and "scene changed: relearn" in js
    assert ".event.scene-change" in (STATIC / "dashboard.css").read_text()
