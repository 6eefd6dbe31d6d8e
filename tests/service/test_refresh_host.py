"""Learning's refreshes against a stand-in for the pipeline (a real registry, real files, real learning thread,
the clock an argument): views answer while a refresh does slow work, a camera without a model of its own has no
refresh view, write errors of the recent footage are reported once and recovered from, a refresh whose training
cannot start ends, resuming survives one camera's broken registry and a stop between registering and saving, a
delete never meets a poll half done (a refresh's or a learning job's) nor a learn half done, a PATCH records the
recent footage anew."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from learning_host import GUARD_S, Host, WatchedLock, in_thread, learn_in_thread
from test_registry import weights_file

from service import training_run
from service.learning import Learning
from service.learning_job import Job
from service.refresh_state import DAY_S
from service.settings import CameraSettings


def own_model(host: Host, tmp_path: Path, camera_id: str = "cam", seed: int = 0) -> str:
    entry = host.registry.add(camera_id, weights_file(tmp_path / f"w{seed}.pt", seed))
    host.registry.activate(camera_id, entry.version)
    return entry.version


def feed(host: Host, camera_id: str, learning: Learning, n: int, t0: float = 0.0) -> None:
    """n kept frames, each scored at once (hold_s is a second: the last second waits)."""
    recent = learning.refresher._cams[camera_id].recent
    assert recent is not None
    for i in range(n):
        host.taps[camera_id](np.full((96, 128, 3), i % 250, np.uint8), t0 + i / 5, False)
        recent.scored(t0 + i / 5)


def ended_run(data: Path, camera_id: str, final_seed: int) -> Path:
    run = data / "cameras" / camera_id / "runs" / "run-0001"
    (run / "footage").mkdir(parents=True)
    weights_file(run / "final.pt", final_seed)
    (run / "progress.json").write_text(json.dumps({"heldout_psnr": 30.0, "init_heldout_psnr": 30.0}))
    return run


def test_views_answer_while_a_refresh_activates_its_model(tmp_path: Path, made: Any) -> None:
    host, learning = made()
    own_model(host, tmp_path)
    learning.start()
    deadline = time.monotonic() + GUARD_S
    while "cam" not in host.taps:  # the learning thread's poll started the recent footage
        assert time.monotonic() < deadline
        time.sleep(0.01)
    run = ended_run(tmp_path / "data", "cam", 1)
    r = learning.refresher
    with r.exclusive():  # a refresh whose training just ended, as the thread's next poll finds it
        cam = r._cams["cam"]
        cam.state.run, cam.state.base, cam.state.frames = "run-0001", "v0001", 3
        cam.proc = subprocess.Popen([sys.executable, "-c", "pass"])
        cam.state.pid = cam.proc.pid
        cam.proc.wait()
        host.hold = True
    assert host.entered.wait(GUARD_S)  # the thread now activates the refreshed model, held there
    view = in_thread(lambda: learning.view("cam"))
    assert view["refresh"] and view["phase"] == "training" and in_thread(lambda: learning.phase("cam")) is None
    host.go.set()
    deadline = time.monotonic() + GUARD_S
    while (last := learning.view("cam")["last_refresh"]) is None:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert last["activated"] and last["version"] == "v0002" and not (run / "footage").exists(), last


def test_no_refresh_view_without_a_model_of_its_own(tmp_path: Path, made: Any, now: list[float]) -> None:
    host, learning = made()
    r = learning.refresher
    r.poll("cam")
    assert learning.view("cam") is None and "cam" not in host.taps  # never learnt: learning is null
    version = own_model(host, tmp_path)
    created = host.registry.entry("cam", version).created
    r.poll("cam")
    view = learning.view("cam")
    assert view is not None and view["phase"] == "done" and view["next_refresh"] == created + DAY_S
    assert "cam" in host.taps
    host.registry.activate("cam", None)  # back to the shipped model
    r.poll("cam")
    assert learning.view("cam") is None and "cam" not in host.taps
    saved = json.loads((tmp_path / "data/cameras/cam/refresh.json").read_text())
    assert saved["version"] is None and saved["since"] is None
    now[0] += 100.0
    host.registry.activate("cam", version)  # its own model again: the clock starts now, not at its creation
    r.poll("cam")
    assert learning.view("cam")["next_refresh"] == now[0] + DAY_S  # type: ignore[index]


def test_no_refresh_of_a_model_learnt_at_another_frame_rate(tmp_path: Path, made: Any) -> None:
    """At another fps the camera's own model does not score it (the shipped one does): nothing to refresh, and no
    footage at the new rate fine-tunes a model of the old one."""
    host, learning = made()
    entry = host.registry.add("cam", weights_file(tmp_path / "w.pt", 0, {"footage": {"frames": 600, "fps": 10.0}}))
    host.registry.activate("cam", entry.version)  # learnt at 10 fps; the camera runs at 5
    learning.refresher.poll("cam")
    assert learning.view("cam") is None and "cam" not in host.taps
    host.cams["cam"] = host.cams["cam"].model_copy(update={"fps": 10.0})  # its rate: refreshed again
    learning.refresher.poll("cam")
    assert learning.view("cam") is not None and "cam" in host.taps


def test_a_write_error_of_the_recent_footage_is_reported_once_and_recovered(tmp_path: Path, made: Any) -> None:
    host, learning = made(footage_minutes=10.0)
    own_model(host, tmp_path)
    r = learning.refresher
    r.poll("cam")
    recent = r._cams["cam"].recent

    def full_disk(img: Any, ts: float) -> None:
        raise OSError(28, "No space left on device")
    recent.writer.append_prepared = full_disk  # type: ignore[method-assign]
    feed(host, "cam", learning, 20)
    view = learning.view("cam")
    assert view is not None and "No space left" in view["recent_error"] and view["recent_frames"] == 0
    r.poll("cam")
    r.poll("cam")
    assert [e for _, e in host.errors] == [view["recent_error"]]  # once, as the camera's last_error
    feed(host, "cam", learning, 20, t0=100.0)  # a new writer (the poll's recover): frames are written again
    view = learning.view("cam")
    assert view["recent_error"] is None and view["recent_frames"] > 0, view
    r.poll("cam")
    assert len(host.errors) == 1


def test_a_refresh_whose_training_cannot_start_ends_with_its_error(tmp_path: Path, made: Any, now: list[float],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    host, learning = made()
    own_model(host, tmp_path)
    r = learning.refresher
    r.poll("cam")
    feed(host, "cam", learning, 20)  # footage_minutes 0.01 at 5 fps: 3 frames fill the window

    def no_process(*args: Any, **kw: Any) -> Any:
        raise OSError(24, "Too many open files")
    monkeypatch.setattr("service.training_run.launch", no_process)
    now[0] += 2 * DAY_S
    r.poll("cam")
    view = learning.view("cam")
    assert view is not None and not view["refresh"], view
    last = view["last_refresh"]
    assert "its training cannot start" in last["error"] and "Too many open files" in last["error"], last
    assert host.errors[-1] == ("cam", last["error"])
    assert not (tmp_path / "data/cameras/cam/runs" / last["run"] / "footage").exists()
    assert view["next_refresh"] == now[0] + DAY_S  # tried again a period later


@pytest.mark.parametrize("activated", [True, False])
def test_a_refresh_stopped_after_registering_its_model_is_recognised(tmp_path: Path, made: Any,
                                                                     activated: bool) -> None:
    host, learning = made()
    own_model(host, tmp_path)
    run = ended_run(tmp_path / "data", "cam", 1)
    host.registry.add("cam", run / "final.pt")  # registered (v0002), and maybe activated, then the service died
    if activated:
        host.registry.activate("cam", "v0002")
    (tmp_path / "data/cameras/cam/refresh.json").write_text(json.dumps(
        {"version": "v0001", "since": 0.0, "run": "run-0001", "base": "v0001", "frames": 3, "train_minutes": 0.1}))
    learning.start()
    learning.stop()
    last = json.loads((tmp_path / "data/cameras/cam/refresh.json").read_text())["last"]
    assert last["activated"] and last["version"] == "v0002", last
    assert [v.version for v in host.registry.versions("cam")] == ["v0001", "v0002"]  # not registered twice
    assert host.registry.active("cam").version == "v0002"  # type: ignore[union-attr]


def test_one_cameras_unreadable_registry_does_not_stop_the_start(tmp_path: Path, made: Any) -> None:
    host, learning = made("bad", "good")
    own_model(host, tmp_path, "good")
    folder = tmp_path / "data/cameras/bad"
    folder.mkdir(parents=True)
    (folder / "refresh.json").write_text(json.dumps(
        {"version": "v0001", "since": 0.0, "run": "run-0001", "base": "v0001", "frames": 3, "train_minutes": 0.1}))
    (host.registry.folder("bad")).mkdir(parents=True, exist_ok=True)
    (host.registry.folder("bad") / "registry.json").write_text("{ not json")
    learning.start()
    deadline = time.monotonic() + GUARD_S
    while "last" not in json.loads((folder / "refresh.json").read_text()):  # its turn for a training slot came
        assert time.monotonic() < deadline
        time.sleep(0.01)
    last = json.loads((folder / "refresh.json").read_text())["last"]
    assert "its training cannot start: cannot read" in last["error"] and not last["activated"], last
    assert host.errors == [("bad", last["error"])]
    while "good" not in host.taps:  # the other camera's recent footage records
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_delete_never_meets_a_poll_half_done(tmp_path: Path, made: Any) -> None:
    host, learning = made()
    own_model(host, tmp_path)
    learning.start()
    deadline = time.monotonic() + GUARD_S
    while "cam" not in host.taps:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    learning.delete_camera("cam")
    polls = host.polled
    while host.polled < polls + 3:  # the learning thread polls on after the delete
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "cam" not in host.taps and "cam" not in learning.refresher._cams
    assert not (tmp_path / "data/cameras/cam").exists()


def test_a_delete_never_meets_a_learning_jobs_poll_half_done(tmp_path: Path, made: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The delete comes after the job's poll read that its training ended, before it registers the model: it
    waits for the poll, then removes all the poll made (no model, state or folder of the camera is left)."""
    host, learning = made(refresh_days=None)
    data = tmp_path / "data"
    ended_run(data, "cam", 1)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    learning._jobs["cam"] = Job("cam", data / "cameras/cam", footage_minutes=0.01, train_minutes=0.1,
                                frames_wanted=3, fps=5.0, run="run-0001", phase="training", proc=proc)
    exclusive = WatchedLock(learning.refresher.exclusive())
    monkeypatch.setattr(learning.refresher, "exclusive", lambda: exclusive)
    read, go = threading.Event(), threading.Event()
    real_poll = training_run.poll

    def poll_then_wait(*args: Any) -> Any:
        out = real_poll(*args)
        read.set()
        assert go.wait(GUARD_S)
        return out
    monkeypatch.setattr("service.training_run.poll", poll_then_wait)
    learning.start()
    assert read.wait(GUARD_S)  # the learning thread read that the training ended, and waits
    deleted = threading.Event()
    delete = threading.Thread(target=lambda: (learning.delete_camera("cam"), deleted.set()), daemon=True)
    delete.start()
    deadline = time.monotonic() + GUARD_S
    while not (deleted.is_set() or exclusive.waited.is_set()):  # the delete is done, or waits for the poll
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.set()
    delete.join(GUARD_S)
    assert deleted.is_set()
    learning.stop()  # the learning thread has finished its poll
    assert not (data / "cameras/cam").exists(), sorted(p.name for p in (data / "cameras/cam").rglob("*"))
    assert host.registry.versions("cam") == [] and learning.phase("cam") is None and host.errors == []


def test_a_delete_never_meets_a_learn_half_done(tmp_path: Path, made: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delete comes after learn read the camera's settings, before it made its job: it waits for learn, then
    removes all learn made (no job, footage tap, state or folder of the camera is left)."""
    host, learning = made(refresh_days=None)
    exclusive = WatchedLock(learning.refresher.exclusive())
    monkeypatch.setattr(learning.refresher, "exclusive", lambda: exclusive)
    read, go = threading.Event(), threading.Event()
    real_next_run = training_run.next_run

    def next_run_then_wait(folder: Path) -> str:  # learn calls it between its read and its job's insert
        read.set()
        assert go.wait(GUARD_S)
        return real_next_run(folder)
    monkeypatch.setattr("service.training_run.next_run", next_run_then_wait)
    learner, learnt = learn_in_thread(learning, "cam")
    assert read.wait(GUARD_S)
    deleted = threading.Event()
    delete = threading.Thread(target=lambda: (learning.delete_camera("cam"), deleted.set()), daemon=True)
    delete.start()
    deadline = time.monotonic() + GUARD_S
    while not (deleted.is_set() or exclusive.waited.is_set()):  # the delete is done, or waits for learn
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.set()
    learner.join(GUARD_S)
    delete.join(GUARD_S)
    assert learnt and deleted.is_set()
    assert "cam" not in host.taps and learning.phase("cam") is None
    folder = tmp_path / "data/cameras/cam"
    assert not folder.exists(), sorted(p.name for p in folder.rglob("*"))


def test_learn_waits_for_a_delete_and_finds_no_camera(tmp_path: Path, made: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """learn called while a delete removes the camera: it waits for the delete, then answers KeyError (the API's
    404) and makes nothing."""
    host, learning = made(refresh_days=None)
    exclusive = WatchedLock(learning.refresher.exclusive())
    monkeypatch.setattr(learning.refresher, "_ops", exclusive)  # exclusive() and every refresh operation
    removing, go = threading.Event(), threading.Event()
    real_remove = host.remove_camera

    def remove_then_wait(camera_id: str) -> None:  # the delete holds the exclusive lock here
        removing.set()
        assert go.wait(GUARD_S)
        real_remove(camera_id)
    monkeypatch.setattr(host, "remove_camera", remove_then_wait)
    delete = threading.Thread(target=learning.delete_camera, args=("cam",), daemon=True)
    delete.start()
    assert removing.wait(GUARD_S)
    learner, learnt = learn_in_thread(learning, "cam")
    deadline = time.monotonic() + GUARD_S
    while not (learnt or exclusive.waited.is_set()):  # learn is done, or waits for the delete
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.set()
    delete.join(GUARD_S)
    learner.join(GUARD_S)
    assert len(learnt) == 1 and isinstance(learnt[0], KeyError), learnt
    assert "cam" not in host.taps and learning.phase("cam") is None
    assert not (tmp_path / "data/cameras/cam").exists()


def test_a_relearn_deletes_the_recent_footage_and_a_patch_records_it_anew(tmp_path: Path, made: Any) -> None:
    host, learning = made(footage_minutes=10.0)
    own_model(host, tmp_path)
    r = learning.refresher
    r.poll("cam")
    feed(host, "cam", learning, 20)
    recent_dir = tmp_path / "data/cameras/cam/recent"
    old = r._cams["cam"].recent
    assert learning.view("cam")["recent_frames"] > 0  # type: ignore[index]
    learning.update_camera(host.cams["cam"].model_copy(update={"stall_after_s": 9.0}), trusted=True)
    assert r._cams["cam"].recent is None and "cam" not in host.taps and recent_dir.is_dir()  # same fps: kept
    r.poll("cam")
    assert r._cams["cam"].recent is not old and r._cams["cam"].recent.frames > 0  # type: ignore[union-attr]
    learning.update_camera(host.cams["cam"].model_copy(update={"fps": 2.0}), trusted=True)
    assert not recent_dir.exists()  # recorded at another fps: gone
    r.poll("cam")
    assert r._cams["cam"].recent.fps == 2.0  # type: ignore[union-attr]
    feed(host, "cam", learning, 100)  # more than a chunk: on disk
    assert recent_dir.is_dir() and learning.view("cam")["recent_frames"] > 50  # type: ignore[index]
    r.release("cam", "the camera relearns")
    assert not recent_dir.exists()  # the view it showed is being replaced


def test_a_removed_cameras_tap_goes_with_it_but_stays_across_a_patch(
        tmp_path: Path, predictor: Any, write_video: Callable[..., Path]) -> None:
    from service.pipeline import Pipeline
    from service.settings import Settings
    from service.store import EventStore

    clip = write_video(tmp_path / "c.avi", [np.zeros((64, 80, 3), np.uint8)] * 5, 10.0)
    store = EventStore.open(tmp_path)
    pipe = Pipeline(Settings(data_dir=tmp_path), predictor, store)
    cam = CameraSettings(id="cam", url=str(clip))
    pipe.add_camera(cam, trusted=True)

    def tap(frame: Any, ts: float, fresh: bool) -> None:
        pass
    pipe.set_tap("cam", tap)
    pipe.update_camera(cam.model_copy(update={"fps": 5.0}), trusted=True)
    assert pipe._cams["cam"].worker.tap is tap  # a PATCH keeps the recording
    pipe.remove_camera("cam")
    pipe.add_camera(cam, trusted=True)  # the same id again: a new camera, recorded by nobody
    assert pipe._cams["cam"].worker.tap is None
    pipe.remove_camera("cam")
    store.close()
