"""A deleted camera's folders go aside under learning's exclusive lock and are removed after it: a camera added again
with the same id meanwhile keeps its new files; tombstones a crash left are never listed as cameras and are removed
at start. The pipeline refuses a footage tap for a camera it does not run."""
from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from learning_host import GUARD_S, Host, WatchedLock, in_thread, learn_in_thread, settings
from test_registry import weights_file

from service import training_run
from service.camera_records import CameraRecords
from service.learning import Learning
from service.settings import CameraSettings


@pytest.fixture
def learning(tmp_path: Path) -> Iterator[Learning]:
    host = Host(tmp_path / "data", "cam")
    made = Learning(settings(refresh_days=None), tmp_path / "data", host, device="cpu")  # type: ignore[arg-type]
    yield made
    made.stop()


def test_a_camera_added_again_while_a_delete_removes_files_keeps_its_own(
        tmp_path: Path, learning: Learning, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delete pauses once its lock is released, before its slow removal; the camera is added again with its id,
    starts learning and gets a model; then the removal runs: it takes only what the deleted camera left."""
    host: Host = learning.pipeline  # type: ignore[assignment]
    data = tmp_path / "data"
    learning.learn("cam")  # the camera to delete has a folder (its job's state, footage) and a model
    host.registry.add("cam", weights_file(tmp_path / "old.pt", 0))
    roots = {data / "cameras", data / "models"}
    paused, go = threading.Event(), threading.Event()
    real_rmtree = shutil.rmtree

    def rmtree_then_wait(path: Any, *args: Any, **kwargs: Any) -> None:
        # the delete's first removal of a whole camera folder waits (the others, and other threads', run on)
        if threading.current_thread() is delete and Path(path).parent in roots and not paused.is_set():
            paused.set()
            assert go.wait(GUARD_S)
        real_rmtree(path, *args, **kwargs)
    monkeypatch.setattr(shutil, "rmtree", rmtree_then_wait)
    delete = threading.Thread(target=learning.delete_camera, args=("cam",), daemon=True)
    delete.start()
    assert paused.wait(GUARD_S)
    again = CameraSettings(id="cam", url="rtsp://127.0.0.1/again", fps=5.0)
    in_thread(lambda: learning.add_camera(again, learn=True))  # fails, instead of hanging, on a lock held
    new_model = in_thread(lambda: host.registry.add("cam", weights_file(tmp_path / "new.pt", 1)))
    go.set()
    delete.join(GUARD_S)
    assert not delete.is_alive()
    folder = data / "cameras/cam"
    assert (folder / "camera.json").is_file() and (folder / "learning.json").is_file(), \
        sorted(p.name for p in data.rglob("*"))
    assert json.loads((folder / "camera.json").read_text())["url"] == again.url
    assert [e.sha256 for e in host.registry.versions("cam")] == [new_model.sha256]
    assert learning.phase("cam") == "recording" and "cam" in host.taps
    assert sorted(p.name for p in (data / "cameras").iterdir()) == ["cam"]  # the tombstones are gone
    assert sorted(p.name for p in (data / "models").iterdir()) == ["cam"]


def test_tombstones_a_crash_left_are_not_cameras_and_go_at_start(tmp_path: Path, learning: Learning) -> None:
    data = tmp_path / "data"
    records = CameraRecords(data)
    records.save(CameraSettings(id="kept", url="rtsp://127.0.0.1/kept"))
    records.save(CameraSettings(id="gone", url="rtsp://127.0.0.1/gone"))
    (data / "models/gone").mkdir(parents=True)
    (data / "models/gone/registry.json").write_text('{"active": null, "versions": []}')
    (data / "cameras/gone").rename(data / "cameras/.deleted-gone-0123abcd")  # a delete stopped by a crash
    (data / "models/gone").rename(data / "models/.deleted-gone-4567ef01")
    assert [c.id for c in records.load()] == ["kept"]
    learning.start()
    host: Host = learning.pipeline  # type: ignore[assignment]
    assert sorted(host.cams) == ["cam", "kept"]
    assert sorted(p.name for p in (data / "cameras").iterdir()) == ["kept"]
    assert sorted(p.name for p in (data / "models").iterdir()) == []


def test_the_pipeline_refuses_a_tap_for_a_camera_it_does_not_run(tmp_path: Path, predictor: Any) -> None:
    from service.pipeline import Pipeline
    from service.settings import Settings
    from service.store import EventStore

    store = EventStore.open(tmp_path)
    pipe = Pipeline(Settings(data_dir=tmp_path), predictor, store)

    def tap(frame: np.ndarray, ts: float, fresh: bool) -> None:
        pass
    with pytest.raises(KeyError):
        pipe.set_tap("nobody", tap)
    with pytest.raises(KeyError):
        pipe.set_tap("nobody", None)
    assert pipe._taps == {}
    pipe.add_camera(CameraSettings(id="nobody", url="rtsp://127.0.0.1/x"), trusted=True)
    assert pipe._cams["nobody"].worker.tap is None  # nothing was kept for it before it came
    pipe.set_tap("nobody", tap)
    assert pipe._cams["nobody"].worker.tap is tap
    pipe.remove_camera("nobody")
    store.close()


def test_a_patch_never_meets_a_learn_half_done(tmp_path: Path, learning: Learning,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The PATCH comes after learn read the camera, before it installs its tap: it waits for learn (a PATCH runs the
    camera anew, dropped then added; a tap given in between would meet no camera)."""
    host: Host = learning.pipeline  # type: ignore[assignment]
    exclusive = WatchedLock(learning.refresher.exclusive())
    monkeypatch.setattr(learning.refresher, "exclusive", lambda: exclusive)
    monkeypatch.setattr(host, "set_tap", refusing_set_tap(host))
    read, go_learn, dropped, go_patch = (threading.Event() for _ in range(4))
    real_next_run, real_update = training_run.next_run, host.update_camera

    def next_run_then_wait(folder: Path) -> str:  # learn calls it between its read and its tap
        read.set()
        assert go_learn.wait(GUARD_S)
        return real_next_run(folder)

    def update_half_done(cam: CameraSettings, *, trusted: bool = False) -> Any:
        del host.cams[cam.id]  # dropped, not yet added again
        dropped.set()
        assert go_patch.wait(GUARD_S)
        return real_update(cam, trusted=trusted)
    monkeypatch.setattr("service.training_run.next_run", next_run_then_wait)
    monkeypatch.setattr(host, "update_camera", update_half_done)
    learner, learnt = learn_in_thread(learning, "cam")
    assert read.wait(GUARD_S)
    patched = host.cams["cam"].model_copy(update={"stall_after_s": 9.0})
    patch = threading.Thread(target=lambda: learning.update_camera(patched, trusted=True), daemon=True)
    patch.start()
    deadline = time.monotonic() + GUARD_S
    while not (dropped.is_set() or exclusive.waited.is_set()):  # the PATCH is half done, or waits for learn
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go_learn.set()
    learner.join(GUARD_S)
    go_patch.set()
    patch.join(GUARD_S)
    assert not patch.is_alive() and len(learnt) == 1 and isinstance(learnt[0], dict), learnt
    assert learning.phase("cam") == "recording" and "cam" in host.taps and host.cams["cam"] == patched


def refusing_set_tap(host: Host) -> Any:
    """The pipeline's set_tap: KeyError for a camera it does not run."""
    real = host.set_tap

    def set_tap(camera_id: str, tap: Any) -> None:
        if camera_id not in host.cams:
            raise KeyError(camera_id)
        real(camera_id, tap)
    return set_tap
