"""Several models in one pipeline: a camera's model is swapped live (other cameras lose nothing), its alerts follow
the new model's calibration, registry versions are activated, verified and restored after a restart."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from live_server import moving_square
from test_registry import weights_file

from model import METRICS, Calibration, Predictor, WeightsError
from model.config import ScoreConfig, get_preset
from model.unet import Generator
from service.api.learning import merge_alerts
from service.frames import SHIPPED, CameraMessage, EventMessage, ScoreMessage, Window
from service.pipeline import Pipeline
from service.settings import AlertSettings, CameraSettings, Settings
from service.store import EventStore

pytestmark = pytest.mark.timeout(120)


def predictor(seed: int, num_frames: int, anomaly_mean: float) -> Predictor:
    """An untrained lite predictor whose calibration puts every z near -anomaly_mean: the z range of a score
    tells which calibration made it."""
    torch.manual_seed(seed)
    cfg = get_preset("lite", num_frames=num_frames)
    cal = Calibration({**dict.fromkeys(METRICS, 0.0), "anomaly": anomaly_mean}, dict.fromkeys(METRICS, 1.0), {}, 1,
                      f"tests: seed {seed}")
    return Predictor(cfg, Generator(cfg).eval(), None, cal, ScoreConfig(), {}, torch.device("cpu"), "fp32")


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met in time"
        time.sleep(0.02)


def make_pipeline(tmp_path: Path, shipped: Predictor, cams: list[CameraSettings]) -> tuple[Pipeline, EventStore]:
    # No alerts: the scores themselves are under test (an untrained model's z would open events).
    settings = Settings(data_dir=tmp_path, cameras=cams, alerts=AlertSettings(on_threshold=1e9, off_threshold=1e8))
    store = EventStore.open(tmp_path)
    return Pipeline(settings, shipped, store), store


def test_swapping_one_cameras_model_never_costs_another_camera_a_window(
        tmp_path: Path, write_video: Callable[..., Path], no_thread_leak: None) -> None:
    n_frames = 120
    frames = moving_square(n_frames, (64, 80), slice(20, 36), width=16, step=3, span=60)
    clip = write_video(tmp_path / "walk.avi", frames, fps=10)
    shipped = predictor(0, 4, 0.0)  # z = anomaly in [-100, 0]
    other = predictor(1, 4, -1000.0)  # same input: the ring is kept; z = anomaly + 1000
    short = predictor(2, 2, -2000.0)  # k = 2: the ring restarts; z = anomaly + 2000
    versions = {"other": other, "short": short}
    z_range = {SHIPPED: (-150, 1), "other": (850, 1001), "short": (1850, 2001)}
    # Files, not looped: paced at 10 fps, they wait for inference instead of dropping, so on a loaded machine
    # every window is still scored; a window lost to the swap would be missing from b's scores.
    cams = [CameraSettings(id=c, url=str(clip), fps=10) for c in ("a", "b")]
    pipe, store = make_pipeline(tmp_path, shipped, cams)
    got: list[tuple[float, ScoreMessage]] = []
    pipe.add_listener(lambda m: got.append((time.monotonic(), m)) if isinstance(m, ScoreMessage) else None)
    swaps: list[tuple[float, str]] = []
    pipe.start()
    try:
        wait_for(lambda: sum(m.camera_id == "a" for _, m in got) >= 5, what="first scores of a")
        for name in ("other", "short", "other", "short", None, "short"):
            version = pipe.set_camera_model("a", versions[name] if name else None,
                                            version=name or SHIPPED).version
            assert version == (name or SHIPPED)
            assert pipe.get_camera("a").model.version == version  # type: ignore[union-attr]
            swaps.append((time.monotonic(), version))
            n = len([m for _, m in got if m.camera_id == "a"])
            wait_for(lambda n=n: len([m for _, m in got if m.camera_id == "a"]) >= n + 4,  # type: ignore[misc]
                     what=f"scores of a ({name})")
        stats = pipe.stats()
        wait_for(lambda: pipe.get_camera("b").state == "ended" and pipe.stats()["inference"]["pending"] == 0,
                 timeout=60, what="b's file played to its end")
        time.sleep(0.2)
        b_status = pipe.get_camera("b")
    finally:
        pipe.stop()
        store.close()

    # b: never skipped, and every window it cut was scored, in order (all frames but the first k).
    b = [m.frame_index for _, m in got if m.camera_id == "b"]
    assert b_status.frames_skipped == 0 and b_status.frames_captured == n_frames
    assert b == list(range(4, n_frames))
    assert all(m.model == SHIPPED for _, m in got if m.camera_id == "b")
    assert b_status.model is not None and b_status.model.version == SHIPPED

    # a: after each swap returned, its scores come from the new model and its calibration (at most one window
    # of the old model was already past the check, in flight).
    for i, (t, version) in enumerate(swaps):
        end = swaps[i + 1][0] if i + 1 < len(swaps) else float("inf")
        after = [m for ts, m in got if m.camera_id == "a" and t < ts < end]
        assert sum(m.model != version for m in after) <= 1, [m.model for m in after]
        ours = [m for m in after if m.model == version]
        assert len(ours) >= 3
        lo, hi = z_range[version]
        assert all(m.score is not None and lo < m.score < hi for m in ours), [m.score for m in ours]
    a_stats = stats["cameras"]["a"]  # type: ignore[index]
    assert a_stats["model"]["version"] == "short" and a_stats["model"]["sha256"] is None  # type: ignore[index]


def test_in_flight_windows_of_the_old_model_are_dropped(tmp_path: Path) -> None:
    """A window cut for the model a camera just left is neither scored into the new calibration nor emitted."""
    shipped, other = predictor(0, 4, 0.0), predictor(1, 4, -1000.0)
    pipe, store = make_pipeline(tmp_path, shipped, [])
    try:
        pipe.add_camera(CameraSettings(id="a", url="rtsp://cam.local/a"))
        got: list[ScoreMessage | EventMessage | CameraMessage] = []
        pipe.add_listener(got.append)
        old = pipe._cams["a"].model  # the model a window in flight was cut for
        pipe.set_camera_model("a", other, version="other")
        data = np.zeros((5, 1, 128, 128), np.float32)
        now = time.time()
        window = Window("a", 7, now, data, np.zeros((8, 8, 3), np.uint8), old, media_ts=now)
        pipe._alerting.on_scores([window], shipped.score(data[None]), 1.0)
        # Only the swap's own camera message: the old model's window is neither scored nor emitted.
        assert got == [CameraMessage("a", "armed", "other", None)]
        new = pipe._cams["a"].model
        pipe._alerting.on_scores([Window("a", 8, now + 0.1, data, window.frame, new, media_ts=now + 0.1)],
                        other.score(data[None]), 1.0)
        assert [m.model for m in got if isinstance(m, ScoreMessage)] == ["other"]
    finally:
        store.close()


def test_activate_registry_versions_refuse_a_tampered_one_and_restore_after_restart(tmp_path: Path) -> None:
    shipped = predictor(0, 4, 0.0)
    pipe, store = make_pipeline(tmp_path, shipped, [])
    try:
        pipe.add_camera(CameraSettings(id="a", url="rtsp://cam.local/a"))
        pipe.add_camera(CameraSettings(id="b", url="rtsp://cam.local/b"))
        assert pipe.get_camera("a").model.version == SHIPPED  # type: ignore[union-attr]
        e1 = pipe.registry.add("a", weights_file(tmp_path / "one.pt", 1))
        e2 = pipe.registry.add("a", weights_file(tmp_path / "two.pt", 2))
        st = pipe.activate_model("a", e1.version)
        assert (st.version, st.sha256, st.error) == ("v0001", e1.sha256[:12], None)
        assert pipe.registry.active("a") == e1
        assert pipe.get_camera("b").model.version == SHIPPED  # type: ignore[union-attr]

        stored = tmp_path / "models/a" / e2.file
        blob = bytearray(stored.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        stored.write_bytes(bytes(blob))
        with pytest.raises(WeightsError, match="sha256 mismatch"):
            pipe.activate_model("a", e2.version)
        st = pipe.get_camera("a").model  # type: ignore[assignment]
        assert st is not None and st.version == "v0001" and st.error is not None and "v0002" in st.error
        assert "sha256 mismatch" in st.error and pipe.registry.active("a") == e1
        with pytest.raises(KeyError):
            pipe.activate_model("a", "v0042")
        with pytest.raises(KeyError):
            pipe.activate_model("nope", "v0001")
    finally:
        store.close()

    # A restart: the camera comes back with its active version.
    pipe, store = make_pipeline(tmp_path, shipped, [])
    try:
        pipe.add_camera(CameraSettings(id="a", url="rtsp://cam.local/a"))
        st = pipe.get_camera("a").model  # type: ignore[assignment]
        assert st is not None and (st.version, st.error) == ("v0001", None)
        assert pipe._cams["a"].worker.ring.num_frames == 4  # weights_file's k
        # Tampered while the service was down: the camera falls back to the shipped model and says why.
        pipe.registry.activate("a", "v0002")
        pipe.remove_camera("a")
        pipe.add_camera(CameraSettings(id="a", url="rtsp://cam.local/a"))
        st = pipe.get_camera("a").model  # type: ignore[assignment]
        assert st is not None and st.version == SHIPPED and st.error is not None and "sha256" in st.error
        # Back to the shipped model on purpose: the registry forgets the active version.
        assert pipe.activate_model("a", None).version == SHIPPED
        assert pipe.registry.active("a") is None and pipe.get_camera("a").model.error is None  # type: ignore[union-attr]
    finally:
        store.close()


def test_swap_waits_for_nothing_while_inference_runs(tmp_path: Path) -> None:
    """set_camera_model only takes the camera's locks: it returns while a forward is in flight."""
    shipped, other = predictor(0, 4, 0.0), predictor(1, 4, -1000.0)
    pipe, store = make_pipeline(tmp_path, shipped, [])
    try:
        pipe.add_camera(CameraSettings(id="a", url="rtsp://cam.local/a"))
        with pipe._model_lock:  # a forward (or a clip batch) holds the model
            done = threading.Event()

            def swap() -> None:
                pipe.set_camera_model("a", other, version="o")
                done.set()

            t = threading.Thread(target=swap)
            t.start()
            assert done.wait(10)
        t.join(5)
        assert pipe.get_camera("a").model.version == "o"  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_patch_whose_alert_overrides_break_the_services_hysteresis_changes_nothing(tmp_path: Path) -> None:
    """The overrides hold against the defaults (off 2.0 <= on 2.75) but not against this service's alert settings
    (on 1.8): refused before the running camera is dropped, which keeps running as it was."""
    store = EventStore.open(tmp_path)
    settings = Settings(data_dir=tmp_path, alerts=AlertSettings(on_threshold=1.8, off_threshold=1.0))
    pipe = Pipeline(settings, predictor(0, 4, 0.0), store)
    try:
        cam = CameraSettings(id="a", url="rtsp://cam.local/a")
        pipe.add_camera(cam)
        with pytest.raises(ValueError, match="off_threshold"):
            pipe.update_camera(cam.model_copy(update={"alerts": {"off_threshold": 2.0}}))
        assert pipe.camera_settings("a") == cam and pipe.get_camera("a").on_threshold == 1.8
    finally:
        store.close()


def test_alerts_merge_patch() -> None:
    old = {"on_threshold": 3.0, "strong_margin": None}  # null stored on purpose: every event waits
    assert merge_alerts(old, {"min_duration_s": 1.0}) == {"on_threshold": 3.0, "strong_margin": None,
                                                          "min_duration_s": 1.0}
    assert merge_alerts(old, {"on_threshold": None}) == {"strong_margin": None}
    assert merge_alerts({"on_threshold": 3.0}, {"on_threshold": None}) is None
    assert merge_alerts(old, None) is None and merge_alerts(None, {"hold_s": 2.0}) == {"hold_s": 2.0}
