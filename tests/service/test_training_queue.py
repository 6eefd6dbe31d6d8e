"""Training slots (`learning.max_trainings`): at most that many training processes at once, cameras' learning and
model refreshes together. A camera whose footage is complete waits `queued` with its place and an ETA that counts
the wait; cameras take their turn in the order their footage was complete, before any refresh; a restart puts the
interrupted trainings back first in turn; a queued camera deleted leaves the queue. Against a stand-in for the
pipeline (real files, real learning thread, real processes that stand for the trainings and end when told);
the same over real RTSP and real training processes is in test_learning.py."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from learning_host import GUARD_S, Host
from test_refresh_host import feed, own_model
from test_registry import weights_file

from model.footage import Footage, footage_frames
from service import training_run
from service.learning import LAUNCH_RETRY_S, LAUNCH_TRIES, Learning, LearningBusy, NotLearning
from service.refresh_state import DAY_S
from service.settings import LearningSettings

TRAIN_MINUTES = 0.1


def test_queue_starts() -> None:
    qs = training_run.queue_starts
    assert qs([], [(0.0, 60.0), (5.0, 60.0)], 2) == [0.0, 5.0]  # free slots: each starts once ready
    assert qs([100.0], [(0.0, 60.0), (0.0, 60.0)], 1) == [100.0, 160.0]  # one slot: in turn
    assert qs([100.0], [(30.0, 60.0), (40.0, 60.0)], 2) == [30.0, 90.0]  # the second waits for the first
    assert qs([10.0, 50.0, 90.0], [(0.0, 60.0)], 2) == [50.0]  # three running on two slots: the second to end
    assert qs([], [], 1) == []


def test_the_default_slots_are_half_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, threads, slots in ((2, 1, 1), (1, 1, 1), (16, 1, 8), (16, 2, 4), (None, 1, 1)):
        monkeypatch.setattr("os.cpu_count", lambda c=cores: c)
        assert LearningSettings(threads=threads).training_slots == slots
    assert LearningSettings(max_trainings=3).training_slots == 3


class Trainings:
    """training_run.launch replaced by real processes that wait until the test ends them, with a model or not."""

    def __init__(self) -> None:
        self.runs: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def launch(self, settings: Any, footage: Path, run_dir: Path, train_minutes: float, **kw: Any
               ) -> subprocess.Popen[bytes]:
        run_dir.mkdir(parents=True, exist_ok=True)
        wait = "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.02)"
        proc = subprocess.Popen([sys.executable, "-c", wait, str(run_dir / "go")], start_new_session=True)
        self.runs.append(run_dir)
        self.procs.append(proc)
        return proc

    def running(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def end(self, run_dir: Path, seed: int) -> None:
        """The training ends with a model."""
        weights_file(run_dir / "final.pt", seed)
        (run_dir / "progress.json").write_text(json.dumps({"heldout_psnr": 30.0, "init_heldout_psnr": 30.0}))
        (run_dir / "go").touch()

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trainings]:
    t = Trainings()
    monkeypatch.setattr("service.training_run.launch", t.launch)
    yield t
    t.stop()


@pytest.fixture
def made(made: Callable[..., tuple[Host, Learning]]) -> Callable[..., tuple[Host, Learning]]:
    """conftest's `made` with one training slot, refresh off, and the cameras' learning state resumed at start."""
    def make(*ids: str, **over: Any) -> tuple[Host, Learning]:
        host, learning = made(*ids, **{"refresh_days": None, "train_minutes": TRAIN_MINUTES, "max_trainings": 1,
                                       **over})
        host.list_cameras = lambda: list(host.cams.values())  # type: ignore[method-assign]
        host.view_of = learning.view  # what the pipeline's `camera` message carries
        return host, learning
    return make


def until(cond: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + GUARD_S
    while not (value := cond()):
        assert time.monotonic() < deadline, what
        time.sleep(0.01)
    return value


def told(host: Host, camera_id: str) -> list[int | None]:
    """The places in the queue that the camera's `camera` messages said, in turn."""
    return [v["queue_position"] if v else None for cam, v in host.published if cam == camera_id]


def record(host: Host, learning: Learning, camera_id: str) -> None:
    """The camera's footage (3 frames at 5 fps with footage_minutes 0.01), moving: it is complete."""
    rng = np.random.default_rng(len(camera_id))
    for i in range(5):
        host.taps[camera_id](rng.integers(0, 255, (96, 128, 3), np.uint8), i / 5, False)
    until(lambda: learning.phase(camera_id) != "recording", f"{camera_id}'s footage complete")


def phases(learning: Learning, *ids: str) -> list[str | None]:
    return [learning.phase(i) for i in ids]


def test_cameras_take_turns_for_one_training_slot(made: Any, trainings: Trainings) -> None:
    host, learning = made("a", "b", "c")
    learning.start()
    for cam in ("a", "b", "c"):
        learning.learn(cam)
    before = learning.view("c")
    assert before is not None and before["phase"] == "recording" and before["queue_position"] is None
    for cam in ("a", "b", "c"):
        record(host, learning, cam)
    until(lambda: phases(learning, "a", "b", "c") == ["training", "queued", "queued"], "a trains, b and c wait")
    assert trainings.running() == 1 and len(trainings.runs) == 1
    b, c = learning.view("b"), learning.view("c")
    assert b is not None and c is not None
    assert (b["queue_position"], c["queue_position"]) == (1, 2)
    budget = TRAIN_MINUTES * 60
    assert b["eta_s"] == pytest.approx(2 * budget, abs=1) and c["eta_s"] == pytest.approx(3 * budget, abs=1)

    learning.delete_camera("b")  # a queued camera leaves the queue: the one behind it hears its new place
    assert told(host, "c")[-1] == 1
    c = learning.view("c")
    assert c is not None and c["queue_position"] == 1 and c["eta_s"] == pytest.approx(2 * budget, abs=1)
    time.sleep(0.2)  # polls meanwhile start nothing: the slot is a's
    assert trainings.running() == 1 and learning.phase("c") == "queued"

    trainings.end(trainings.runs[0], 1)
    until(lambda: phases(learning, "a", "c") == ["done", "training"], "a armed, then c trains")
    assert len(trainings.runs) == 2 and trainings.procs[0].poll() == 0  # a's process ended before c's started
    assert host.registry.active("a") is not None
    trainings.end(trainings.runs[1], 2)
    until(lambda: learning.phase("c") == "done", "c armed")
    assert trainings.running() == 0 and len(trainings.runs) == 2


def three_in_line(host: Host, learning: Learning) -> None:
    """Cameras a, b and c learn in turn: a trains, b and c wait (c second in line, as its messages said)."""
    learning.start()
    for cam in ("a", "b", "c"):
        learning.learn(cam)
        record(host, learning, cam)
    until(lambda: phases(learning, "a", "b", "c") == ["training", "queued", "queued"], "a trains, b and c wait")
    assert 1 not in told(host, "c")


def test_the_cameras_behind_hear_when_a_training_starts(made: Any, trainings: Trainings) -> None:
    host, learning = made("a", "b", "c")
    three_in_line(host, learning)
    trainings.end(trainings.runs[0], 1)
    until(lambda: learning.phase("b") == "training", f"b trains: {learning.view('b')}")
    until(lambda: 1 in told(host, "c"), "c told it is next")


def test_two_slots_train_two_cameras_at_once(made: Any, trainings: Trainings) -> None:
    host, learning = made("a", "b", "c", max_trainings=2)
    learning.start()
    for cam in ("a", "b", "c"):
        learning.learn(cam)
        record(host, learning, cam)
    until(lambda: phases(learning, "a", "b", "c") == ["training", "training", "queued"], "two train, c waits")
    assert trainings.running() == 2


def test_a_restart_puts_the_interrupted_training_first_in_turn(tmp_path: Path, made: Any,
                                                               trainings: Trainings) -> None:
    host, learning = made("a", "b")
    learning.start()
    for cam in ("a", "b"):
        learning.learn(cam)
        record(host, learning, cam)
    until(lambda: phases(learning, "a", "b") == ["training", "queued"], "a trains, b waits")
    learning.stop()  # a's training stops with the service; its state stays on disk
    assert trainings.running() == 0
    assert json.loads((tmp_path / "data/cameras/a/learning.json").read_text())["phase"] == "training"

    host2, again = made("a", "b")
    again.start()  # a goes on at once (its run resumes from its checkpoint), b waits again
    assert phases(again, "a", "b") == ["training", "queued"]
    assert trainings.running() == 1 and trainings.runs[-1] == trainings.runs[0]  # the same run folder
    view = again.view("b")
    assert view is not None and view["queue_position"] == 1


def test_a_refresh_waits_for_a_slot_and_for_the_cameras_that_learn(tmp_path: Path, made: Any,
                                                                   trainings: Trainings) -> None:
    host, learning = made("old", "a", "b", refresh_days=1.0)
    own_model(host, tmp_path, "old")  # armed with a model of its own: its refresh becomes due below
    learning.refresher.poll("old")
    feed(host, "old", learning, 20)
    learning.start()
    for cam in ("a", "b"):
        learning.learn(cam)
        record(host, learning, cam)
    until(lambda: phases(learning, "a", "b") == ["training", "queued"], "a trains, b waits")
    learning.clock = learning.refresher.clock = lambda: time.time() + 2 * DAY_S  # the refresh is due
    time.sleep(0.3)  # polls meanwhile: the refresh waits (no slot, and b waits to learn)
    view = learning.view("old")
    assert view is not None and not view["refresh"] and trainings.running() == 1

    trainings.end(trainings.runs[0], 1)
    until(lambda: learning.phase("b") == "training", "b's turn before the refresh")
    time.sleep(0.3)
    assert trainings.running() == 1 and not learning.view("old")["refresh"]  # type: ignore[index]
    trainings.end(trainings.runs[1], 2)
    until(lambda: len(trainings.runs) == 3, "the refresh trains once the slot is free")
    assert trainings.runs[2].parent.parent.name == "old" and learning.phase("b") == "done"
    until(lambda: (learning.view("old") or {}).get("phase") == "training", "the refresh's view")
    assert trainings.running() == 1


def test_cancelling_frees_the_slot_and_the_queue(tmp_path: Path, made: Any, trainings: Trainings) -> None:
    host, learning = made("a", "b", "c")
    three_in_line(host, learning)
    view = learning.cancel("b")  # a queued camera: out of the queue, its footage gone
    assert view["phase"] == "cancelled" and not (tmp_path / "data/cameras/b/footage").exists()
    assert told(host, "c")[-1] == 1  # c moved up: it hears so
    assert learning.view("c")["queue_position"] == 1  # type: ignore[index]
    learning.cancel("a")  # the training one: its process stops, its run goes, c's turn comes
    assert trainings.procs[0].poll() is not None and not trainings.runs[0].exists()
    until(lambda: learning.phase("c") == "training", "c trains")
    assert trainings.running() == 1 and phases(learning, "a", "b") == ["cancelled", "cancelled"]
    assert host.registry.versions("a") == []
    with pytest.raises(NotLearning):
        learning.cancel("a")
    with pytest.raises(KeyError):
        learning.cancel("nope")
    learning.learn("a")  # learns again from scratch
    assert learning.phase("a") == "recording" and learning.view("a")["frames_recorded"] == 0  # type: ignore[index]


def test_a_training_that_cannot_start_keeps_its_footage_and_is_tried_again(
        made: Any, trainings: Trainings, now: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    host, learning = made("a", "b")
    failing = [True]

    def launch(*args: Any, **kw: Any) -> subprocess.Popen[bytes]:
        if failing[0]:
            raise OSError(12, "Cannot allocate memory")
        return trainings.launch(*args, **kw)

    monkeypatch.setattr("service.training_run.launch", launch)
    learning.start()
    learning.learn("a")
    record(host, learning, "a")
    view = until(lambda: (v := learning.view("a")) and v["error"] and v, "a's launch failed")
    assert view["phase"] == "queued" and "Cannot allocate memory" in view["error"], view
    assert "try 1 of" in view["error"], view
    until(lambda: ("a", view["error"]) in host.errors, "a's last_error says why")
    assert any((host.registry.root.parent / "cameras/a/footage").iterdir())  # nothing recorded is lost
    learning.learn("b")  # b's turn comes while a waits for its retry: the slot is not held by a
    failing[0] = False
    record(host, learning, "b")
    until(lambda: learning.phase("b") == "training", f"b trains: {learning.view('b')}")
    assert learning.phase("a") == "queued"
    trainings.end(trainings.runs[0], 1)
    until(lambda: learning.phase("b") == "done", "b armed")
    time.sleep(0.2)
    assert learning.phase("a") == "queued"  # not before its retry time
    now[0] += LAUNCH_RETRY_S
    until(lambda: learning.phase("a") == "training", "a tried again and trains")
    assert learning.view("a")["error"] is None  # type: ignore[index]


def test_a_training_that_never_starts_fails_after_its_tries(made: Any, now: list[float],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    host, learning = made("a")
    tries: list[Path] = []

    def launch(settings: Any, footage: Path, run_dir: Path, *args: Any, **kw: Any) -> subprocess.Popen[bytes]:
        tries.append(run_dir)
        raise PermissionError(13, "Permission denied", str(run_dir))

    monkeypatch.setattr("service.training_run.launch", launch)
    learning.start()
    learning.learn("a")
    record(host, learning, "a")
    for n in range(1, LAUNCH_TRIES):
        view = until(lambda n=n: (v := learning.view("a")) and f"try {n} of" in (v["error"] or "") and v,
                     f"try {n} failed")
        assert len(tries) == n and view["phase"] == "queued"
        assert view["eta_s"] >= LAUNCH_RETRY_S - 1  # the wait for its retry counts
        now[0] += LAUNCH_RETRY_S
    until(lambda: learning.phase("a") == "failed", "a failed after its tries")
    assert len(tries) == LAUNCH_TRIES
    assert f"({LAUNCH_TRIES} tries)" in learning.view("a")["error"]  # type: ignore[index]


def test_a_new_fps_records_the_footage_again_and_waits_for_a_training(tmp_path: Path, made: Any,
                                                                      trainings: Trainings) -> None:
    """A model learns motion at its footage's rate: footage being recorded starts again at the new rate; footage
    queued or in training keeps its rate, so a new fps is refused until the training ends or is cancelled."""
    host, learning = made("a", "b", footage_minutes=0.1)
    learning.start()
    learning.learn("a")
    rng = np.random.default_rng(0)
    for i in range(4):
        host.taps["a"](rng.integers(0, 255, (96, 128, 3), np.uint8), i / 5, False)
    until(lambda: (learning.view("a") or {}).get("frames_recorded") == 4, "a's first frames recorded")
    assert learning.view("a")["eta_s"] is not None  # type: ignore[index]
    host.live = False  # its frames stop coming: when its footage is complete is not known
    assert learning.view("a")["eta_s"] is None  # type: ignore[index]
    host.live = True
    assert learning.view("a")["frames_wanted"] == 30  # type: ignore[index]  # 0.1 min at 5 fps
    learning.update_camera(host.cams["a"].model_copy(update={"fps": 2.5}), trusted=True)
    view = learning.view("a")
    assert view is not None and view["phase"] == "recording"
    assert (view["frames_wanted"], view["frames_recorded"]) == (15, 0)  # 0.1 min at 2.5 fps, from the start
    assert "a" in host.taps  # still recording
    saved = json.loads((tmp_path / "data/cameras/a/learning.json").read_text())
    assert (saved["fps"], saved["frames_wanted"]) == (2.5, 15)  # what a restart goes on with
    for i in range(17):
        host.taps["a"](rng.integers(0, 255, (96, 128, 3), np.uint8), i / 2.5, False)
    until(lambda: learning.phase("a") != "recording", "a's footage at the new rate complete")
    footage = Footage(tmp_path / "data/cameras/a/footage")
    assert footage.fps == 2.5 and footage.frames == 15  # the old rate's frames are gone

    learning.learn("b")
    for i in range(32):  # a frame past the footage wanted: the recording knows it is full
        host.taps["b"](rng.integers(0, 255, (96, 128, 3), np.uint8), i / 5, False)
    until(lambda: learning.phase("b") == "queued", "b waits for a's training slot")
    with pytest.raises(LearningBusy, match="queued on footage at 5 fps"):
        learning.update_camera(host.cams["b"].model_copy(update={"fps": 10.0}), trusted=True)
    assert host.cams["b"].fps == 5.0  # refused: nothing changed
    learning.update_camera(host.cams["b"].model_copy(update={"url": "rtsp://127.0.0.1/b2"}), trusted=True)
    assert host.cams["b"].url.endswith("/b2")  # the same rate: a new address is fine
    learning.cancel("b")
    learning.update_camera(host.cams["b"].model_copy(update={"fps": 10.0}), trusted=True)
    assert host.cams["b"].fps == 10.0


def test_a_new_fps_cancels_a_refresh_training_on_footage_of_the_old_rate(tmp_path: Path, made: Any,
                                                                          trainings: Trainings) -> None:
    host, learning = made("old", refresh_days=1.0)
    own_model(host, tmp_path, "old")
    learning.refresher.poll("old")
    feed(host, "old", learning, 20)
    learning.clock = learning.refresher.clock = lambda: time.time() + 2 * DAY_S  # the refresh is due
    learning.start()
    until(lambda: trainings.running() == 1, "the refresh trains")
    learning.update_camera(host.cams["old"].model_copy(update={"fps": 10.0}), trusted=True)
    assert trainings.running() == 0  # its process stopped: the model it would make learnt 5 fps
    view = learning.view("old")
    assert view is not None and not view["refresh"]
    assert "fps changed" in view["last_refresh"]["error"], view
    assert ("old", "refresh cancelled: the camera's fps changed") in host.errors


def test_a_restart_at_another_fps_records_again_or_fails_the_training(tmp_path: Path, made: Any,
                                                                      trainings: Trainings) -> None:
    """The settings file gives the cameras another fps across a restart: footage being recorded starts again at the
    new rate; footage of the old rate waiting for or in training is not learnt (a model of it would not score)."""
    host, learning = made("a", "b", footage_minutes=0.1)
    learning.start()
    learning.learn("a")
    learning.learn("b")
    rng = np.random.default_rng(1)
    for i in range(32):
        host.taps["b"](rng.integers(0, 255, (96, 128, 3), np.uint8), i / 5, False)
    until(lambda: learning.phase("b") == "training", "b trains")
    host.taps["a"](rng.integers(0, 255, (96, 128, 3), np.uint8), 0.0, False)
    learning.stop()

    host2, again = made("a", "b", footage_minutes=0.1)
    host2.cams = {k: v.model_copy(update={"fps": 10.0}) for k, v in host2.cams.items()}
    again.start()
    a, b = again.view("a"), again.view("b")
    assert a is not None and a["phase"] == "recording" and (a["frames_wanted"], a["frames_recorded"]) == (60, 0)
    assert b is not None and b["phase"] == "failed" and "recorded at 5 fps" in b["error"], b
    assert trainings.running() == 0


@pytest.mark.parametrize("auto_relearn", [True, False])
def test_a_new_fps_relearns_a_camera_whose_own_model_no_longer_fits_with_auto_relearn(
        tmp_path: Path, made: Any, trainings: Trainings, auto_relearn: bool) -> None:
    """auto_relearn: a camera whose own model learnt another rate than its new fps learns again at the new one by
    itself, as after a scene change; its models stay. A model that fits the new rate too (no footage rate recorded), a
    stopped camera, or footage too short at the new rate: no relearn. Off, the camera waits for the user."""
    host, learning = made("own", "any_rate", "stopped", "shipped", auto_relearn=auto_relearn, footage_minutes=0.1)
    at_5_fps = {"footage": {"fps": 5.0, "frames": 100}}
    version = host.registry.add("own", weights_file(tmp_path / "own.pt", 0, at_5_fps)).version
    host.registry.activate("own", version)
    host.registry.activate("any_rate", host.registry.add("any_rate", weights_file(tmp_path / "any.pt", 1)).version)
    stopped = host.registry.add("stopped", weights_file(tmp_path / "s.pt", 2, at_5_fps))
    host.registry.activate("stopped", stopped.version)
    learning.start()
    learning.update_camera(host.cams["shipped"].model_copy(update={"fps": 10.0}), trusted=True)
    learning.update_camera(host.cams["any_rate"].model_copy(update={"fps": 10.0}), trusted=True)
    learning.update_camera(host.cams["stopped"].model_copy(update={"fps": 10.0, "enabled": False}), trusted=True)
    learning.update_camera(host.cams["own"].model_copy(update={"url": "rtsp://127.0.0.1/own2"}), trusted=True)
    assert [learning.phase(c) for c in ("shipped", "any_rate", "stopped", "own")] == [None] * 4
    learning.update_camera(host.cams["own"].model_copy(update={"fps": 0.5}), trusted=True)
    assert learning.phase("own") is None  # 0.1 min at 0.5 fps: 3 frames, too few to learn from
    learning.update_camera(host.cams["own"].model_copy(update={"fps": 10.0}), trusted=True)
    view = learning.view("own")
    if not auto_relearn:
        assert learning.phase("own") is None
        return
    assert view is not None and view["phase"] == "recording", view
    assert view["frames_wanted"] == footage_frames(learning.settings.footage_minutes, 10.0)
    assert "own" in host.taps  # recording at the new rate
    assert [e.version for e in host.registry.versions("own")] == [version]  # kept for rollback
