"""A camera learns its own model in the service: footage from a real RTSP stream, training in a process of its own
(a budget of seconds), then armed with its own model; a restart resumes the training, a delete kills it; frozen
streams are refused; the disk cap stops recording; rollback and PATCH keep the camera's models."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RtspServer
from live_server import moving_square
from test_registry import weights_file
from timing import scaled
from websockets.sync.client import connect

from model.footage import Footage
from model.recipes import recipe_path
from service.api.schemas import CameraWsMessage, ScoreWsMessage
from service.frames import ScoreMessage
from service.settings import AlertSettings

FPS = 10.0
# 110 frames: the held-out tail needs 32 windows of k + 1 = 9 frames, the rest trains.
FOOTAGE_MINUTES = 110 / FPS / 60


def fast_recipe(tmp_path: Path) -> Path:
    """camera-lite with its first checkpoint after 10 steps instead of 200: a budget of seconds checkpoints."""
    recipe = yaml.safe_load(recipe_path("camera-lite").read_text())
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump({**recipe, "val_every": 10, "val_windows": 8}))
    return path


def learning_settings(tmp_path: Path, **over: Any) -> dict[str, Any]:
    return {"recipe": str(fast_recipe(tmp_path)), "poll_s": 0.2, "nice": 0, "footage_minutes": FOOTAGE_MINUTES,
            "train_minutes": 0.1, **over}


def wait_for(get: Callable[[], Any], cond: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if cond(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s: {value}"
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def moving_rtsp() -> Iterator[RtspServer]:
    """A camera whose picture moves enough to learn: the bouncing ball (the pinwheel turns too little for the
    footage's motion check at the model's 128x128)."""
    srv = RtspServer(pattern="ball").start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.mark.timeout(240)
def test_lifecycle_over_rtsp_learning_training_armed(tmp_path: Path, moving_rtsp: RtspServer,
                                                     serve_service: Callable[..., Any]) -> None:
    rtsp_server = moving_rtsp
    srv, c, service = serve_service(tmp_path / "data", learning=learning_settings(tmp_path))
    scores: list[ScoreMessage] = []
    service.pipeline.add_listener(lambda m: scores.append(m) if isinstance(m, ScoreMessage) else None)
    with connect(f"{srv.ws_url}?cameras=gate", open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        r = c.post("/v1/cameras", json={"id": "gate", "url": rtsp_server.url, "fps": FPS,
                                        "learn": {"footage_minutes": FOOTAGE_MINUTES, "train_minutes": 0.1}})
        assert r.status_code == 201, r.text
        cam = r.json()
        assert cam["mode"] == "learning" and cam["learning"]["frames_wanted"] == 110
        assert cam["learning"]["phase"] == "recording" and cam["learning"]["eta_s"] > 6
        assert c.post("/v1/cameras/gate/learn").status_code == 409  # learning already
        modes: list[str] = []
        unarmed: list[dict[str, Any]] = []
        armed: list[dict[str, Any]] = []
        deadline = time.monotonic() + scaled(200)
        while len(armed) < 3:
            assert time.monotonic() < deadline, (modes, len(unarmed), c.get("/v1/cameras/gate").json())
            msg = json.loads(ws.recv(timeout=60))
            if msg["type"] == "camera":
                CameraWsMessage.model_validate(msg)
                modes.append(msg["mode"])
                assert msg["mode"] != "unarmed", f"learning failed: {msg['learning']}"
                if msg["mode"] == "training":  # the footage is whole and moves
                    assert msg["learning"]["frames_recorded"] >= 110 and msg["learning"]["error"] is None
            elif msg["type"] == "score":
                ScoreWsMessage.model_validate(msg)
                if not msg["armed"]:
                    assert not armed and msg["smoothed"] is None  # no alert engine fed before it is armed
                    unarmed.append(msg)
                elif modes and modes[-1] == "armed":
                    armed.append(msg)
                else:
                    pytest.fail(f"an armed score before the camera was armed: {msg}, modes {modes}")
    assert modes[0] == "learning" and "training" in modes and modes[-1] == "armed", modes
    assert len(unarmed) >= 10  # the shipped model scored it meanwhile, without alerting
    cam = c.get("/v1/cameras/gate").json()
    assert cam["mode"] == "armed" and cam["model"]["version"] == "v0001" and cam["learning"]["phase"] == "done"
    assert cam["model"]["heldout_psnr"] is not None and cam["model"]["footage"]["frames"] >= 110
    assert cam["model"]["calibration"]["frames"] > 0 and cam["learning"]["step"] > 0
    own = [m for m in scores if m.model == "v0001"]
    assert own and all(m.armed for m in own)  # scores from its own model, armed
    models = c.get("/v1/cameras/gate/models").json()
    assert models["active"] == "v0001" and [v["active"] for v in models["versions"]] == [True]
    assert c.get("/v1/stats").json()["cameras"]["gate"]["mode"] == "armed"
    metrics = c.get("/metrics").text
    assert 'ffp_camera_mode{camera="gate",mode="armed"} 1.0' in metrics
    assert 'ffp_camera_learning_progress{camera="gate",phase="done"} 1.0' in metrics
    footage = Footage(tmp_path / "data/cameras/gate/footage")
    assert footage.frames >= 110 and (tmp_path / "data/cameras/gate/runs/run-0001/final.pt").is_file()


@pytest.mark.timeout(240)
def test_restart_during_training_resumes_it_and_delete_kills_it(tmp_path: Path, moving_rtsp: RtspServer,
                                                                 serve_service: Callable[..., Any]) -> None:
    rtsp_server = moving_rtsp
    data = tmp_path / "data"
    settings = learning_settings(tmp_path, train_minutes=3.0)
    srv, c, service = serve_service(data, learning=settings)
    r = c.post("/v1/cameras", json={"id": "gate", "url": f"rtsp://user:pw@127.0.0.1:{rtsp_server.port}/cam",
                                    "fps": FPS, "learn": {}})
    assert r.status_code == 201 and r.json()["learning"]["train_minutes"] == 3.0
    run = data / "cameras/gate/runs/run-0001"
    wait_for(lambda: (run / "last.pt").is_file(), bool, 150, "the first checkpoint")
    before = json.loads((run / "progress.json").read_text())["step"]
    pid = json.loads((data / "cameras/gate/learning.json").read_text())["pid"]
    assert alive(pid) and before >= 10
    service.stop()  # the service goes down: its training process with it, its state stays on disk
    assert not alive(pid)

    srv2, c2, service2 = serve_service(data, learning=settings)
    cam = c2.get("/v1/cameras/gate").json()  # added over the API: it came back, credentials kept but not shown
    assert cam["mode"] == "training" and "pw" not in cam["url"], cam
    assert "user:pw@" in (data / "cameras/gate/camera.json").read_text()
    pid2 = json.loads((data / "cameras/gate/learning.json").read_text())["pid"]
    assert pid2 != pid and alive(pid2)
    steps = wait_for(lambda: c2.get("/v1/cameras/gate").json()["learning"]["step"], lambda s: s and s > before,
                     90, "a step after the checkpoint")
    assert steps > before  # went on from the checkpoint, not from 0
    assert c2.get("/v1/cameras/gate").json()["learning"]["step"] >= before

    assert c2.delete("/v1/cameras/gate").status_code == 204  # deleted while training: the process is killed
    wait_for(lambda: alive(pid2), lambda a: not a, 10, "the training process gone")
    assert not (data / "cameras/gate").exists() and not (data / "models/gate").exists()
    assert c2.get("/v1/cameras/gate").status_code == 404


@pytest.mark.timeout(120)
def test_cancel_learning_over_the_api(tmp_path: Path, moving_rtsp: RtspServer,
                                      serve_service: Callable[..., Any]) -> None:
    data = tmp_path / "data"
    _, c, _ = serve_service(data, learning=learning_settings(tmp_path))
    r = c.post("/v1/cameras", json={"id": "gate", "url": moving_rtsp.url, "fps": FPS, "learn": {}})
    assert r.status_code == 201 and r.json()["mode"] == "learning"
    wait_for(lambda: c.get("/v1/cameras/gate").json()["learning"]["frames_recorded"], lambda n: n > 0, 30,
             "footage recorded")
    r = c.delete("/v1/cameras/gate/learn")
    assert r.status_code == 200 and r.json()["phase"] == "cancelled", r.text
    cam = c.get("/v1/cameras/gate").json()
    assert cam["mode"] == "unarmed" and cam["learning"]["phase"] == "cancelled", cam  # as before it learnt
    assert not (data / "cameras/gate/footage").exists()
    assert c.delete("/v1/cameras/gate/learn").status_code == 409  # nothing to cancel
    assert c.delete("/v1/cameras/nope/learn").status_code == 404
    assert c.post("/v1/cameras/gate/learn").status_code == 202  # and it can learn again
    assert c.get("/v1/cameras/gate").json()["mode"] == "learning"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pattern, reason", [("gradient", "frozen"), ("black", "uniform")])
def test_a_frozen_or_black_stream_is_refused(tmp_path: Path, pattern: str, reason: str,
                                             serve_service: Callable[..., Any]) -> None:
    rtsp = RtspServer(pattern=pattern).start()
    try:
        _, c, _ = serve_service(tmp_path / "data", learning=learning_settings(tmp_path))
        r = c.post("/v1/cameras", json={"id": "still", "url": rtsp.url, "fps": FPS, "learn": {}})
        assert r.status_code == 201, r.text
        cam = wait_for(lambda: c.get("/v1/cameras/still").json(), lambda j: j["learning"]["phase"] != "recording",
                       90, "the end of recording")
    finally:
        rtsp.kill()
    assert cam["learning"]["phase"] == "failed" and cam["mode"] == "unarmed", cam
    assert reason in cam["learning"]["error"] and reason in cam["last_error"]
    assert not (tmp_path / "data/cameras/still/runs").exists()  # never trained


@pytest.mark.timeout(120)
def test_disk_cap_stops_recording_and_says_why(tmp_path: Path, write_video: Callable[..., Path],
                                               serve_service: Callable[..., Any]) -> None:
    frames = moving_square(60, (96, 128), slice(30, 60), width=20, step=5, span=100)
    clip = write_video(tmp_path / "walk.avi", frames, fps=FPS)
    cap_mb = 0.2  # 12 frames of 128x128 grey (16 kB each) and their chunk headers
    cams = [{"id": "walk", "url": str(clip), "fps": FPS, "loop": True}]
    _, c, _ = serve_service(tmp_path / "data", cameras=cams,
                            learning=learning_settings(tmp_path, disk_cap_mb=cap_mb))
    r = c.post("/v1/cameras/walk/learn", json={"footage_minutes": 1.0})
    assert r.status_code == 202 and r.json()["frames_wanted"] == 600
    assert r.json()["eta_s"] is not None and r.json()["eta_s"] > 60  # a minute of footage, then the training
    cam = wait_for(lambda: c.get("/v1/cameras/walk").json(), lambda j: j["learning"]["phase"] == "failed", 60,
                   "recording stopped")
    learning = cam["learning"]
    assert learning["stopped"] is not None and "disk cap" in learning["stopped"], learning
    assert "too short" in learning["error"]  # what the cap left is not enough to learn from: said, not hidden
    assert cam["mode"] == "armed"  # a settings-file camera: the shipped model keeps alerting
    footage = Footage(tmp_path / "data/cameras/walk/footage")
    assert footage.bytes <= cap_mb * 1e6 and footage.frames == learning["frames_recorded"] > 0
    assert sum(len(s) for s in footage.segments()) == footage.frames  # every chunk whole and readable


@pytest.mark.timeout(120)
def test_rollback_and_patch_keep_mode_and_models(tmp_path: Path, serve_service: Callable[..., Any]) -> None:
    data = tmp_path / "data"
    _, c, service = serve_service(data, learning=learning_settings(tmp_path))
    r = c.post("/v1/cameras", json={"id": "door", "url": "rtsp://127.0.0.1:9/a", "use_shipped": False})
    assert r.status_code == 201 and r.json()["mode"] == "unarmed"
    registry = service.pipeline.registry
    v1 = registry.add("door", weights_file(tmp_path / "a.pt", 0, {"heldout_psnr": 30.5}))
    registry.add("door", weights_file(tmp_path / "b.pt", 1))
    r = c.post("/v1/cameras/door/models/v0002/activate")
    assert r.status_code == 200 and r.json()["model"]["version"] == "v0002" and r.json()["mode"] == "armed"
    r = c.post("/v1/cameras/door/models/v0001/activate")  # rollback
    assert r.status_code == 200 and r.json()["model"]["version"] == "v0001"
    assert r.json()["model"]["heldout_psnr"] == 30.5 and r.json()["model"]["created"] == v1.created
    assert c.post("/v1/cameras/door/models/v0042/activate").status_code == 404
    assert c.post("/v1/cameras/nope/models/v0001/activate").status_code == 404
    assert c.get("/v1/cameras/nope/models").status_code == 404
    assert c.post("/v1/cameras/nope/learn").status_code == 404
    models = c.get("/v1/cameras/door/models").json()
    assert models["active"] == "v0001" and [v["version"] for v in models["versions"]] == ["v0001", "v0002"]

    r = c.patch("/v1/cameras/door", json={"url": "rtsp://127.0.0.1:9/b", "fps": 4, "alerts": {"on_threshold": 6}})
    assert r.status_code == 200, r.text
    cam = r.json()
    assert cam["url"].endswith("/b") and cam["fps_target"] == 4 and cam["on_threshold"] == 6
    assert cam["mode"] == "armed" and cam["model"]["version"] == "v0001"
    assert json.loads((data / "cameras/door/camera.json").read_text())["url"].endswith("/b")
    assert c.patch("/v1/cameras/door", json={"url": "ftp://x/y"}).status_code == 422
    assert c.patch("/v1/cameras/door", json={"fps": -1}).status_code == 422
    assert c.patch("/v1/cameras/door", json={"name": "x"}).status_code == 422
    assert c.patch("/v1/cameras/nope", json={"fps": 4}).status_code == 404
    assert c.patch("/v1/cameras/door", json={"url": None}).status_code == 422
    assert c.patch("/v1/cameras/door", json={"fps": None}).status_code == 422
    assert c.patch("/v1/cameras/door", json={"fps": True}).status_code == 422  # not a number: not 1 fps
    for body in ({"train_minutes": True}, {"footage_minutes": "5"}, {"footage_minutes": -1}):
        assert c.post("/v1/cameras/door/learn", json=body).status_code == 422, body
    # Footage too short to learn from is said before it is recorded, not by a training that fails on it.
    r = c.post("/v1/cameras/door/learn", json={"footage_minutes": 0.001})
    assert r.status_code == 422 and "learning needs at least" in r.json()["detail"], r.text
    r = c.post("/v1/cameras", json={"id": "tiny", "url": "rtsp://127.0.0.1:9/t", "learn": {"footage_minutes": 0.001}})
    assert r.status_code == 422 and c.get("/v1/cameras/tiny").status_code == 404
    assert c.get("/v1/cameras/door").json()["learning"] is None  # nothing started
    # NaN passes every comparison's "no": a NaN threshold would alert on every frame. JSON can spell it.
    headers = {"content-type": "application/json"}
    for bad in ("NaN", "Infinity"):
        r = c.patch("/v1/cameras/door", content=f'{{"alerts": {{"on_threshold": {bad}}}}}', headers=headers)
        assert r.status_code == 422, r.text
        body = f'{{"id": "nan", "url": "rtsp://127.0.0.1:9/n", "alerts": {{"on_threshold": {bad}}}}}'
        r = c.post("/v1/cameras", content=body, headers=headers)
        assert r.status_code == 422, r.text
    # JSON's true is not the number 1: not 1 fps, not a threshold of 1.
    for body in ({"id": "yes", "url": "rtsp://127.0.0.1:9/y", "fps": True},
                 {"id": "yes", "url": "rtsp://127.0.0.1:9/y", "alerts": {"on_threshold": True}}):
        assert c.post("/v1/cameras", json=body).status_code == 422, body
    assert c.patch("/v1/cameras/door", json={"alerts": {"hold_s": True}}).status_code == 422
    assert c.get("/v1/cameras/door").json()["model"]["version"] == "v0001"  # a refused PATCH changed nothing
    assert c.get("/v1/cameras/door").json()["on_threshold"] == 6

    # alerts is merged into the camera's overrides; null sends a key back to the service's setting
    r = c.patch("/v1/cameras/door", json={"alerts": {"min_duration_s": 1.0}})
    assert r.status_code == 200 and r.json()["on_threshold"] == 6
    assert service.pipeline.camera_settings("door").alerts == {"on_threshold": 6, "min_duration_s": 1.0}
    r = c.patch("/v1/cameras/door", json={"alerts": {"on_threshold": None}})
    assert r.status_code == 200 and r.json()["on_threshold"] == AlertSettings().on_threshold
    assert service.pipeline.camera_settings("door").alerts == {"min_duration_s": 1.0}
    assert c.patch("/v1/cameras/door", json={"alerts": None}).status_code == 200
    assert service.pipeline.camera_settings("door").alerts is None

    # Stopped and started again: configured meanwhile, its model kept.
    r = c.patch("/v1/cameras/door", json={"enabled": False})
    assert r.status_code == 200 and r.json()["state"] == "stopped" and r.json()["model"]["version"] == "v0001"
    assert service.pipeline._cams["door"].worker._thread is None  # no capture thread
    r = c.patch("/v1/cameras/door", json={"enabled": True})
    assert r.status_code == 200 and r.json()["state"] != "stopped"
    assert json.loads((data / "cameras/door/camera.json").read_text())["enabled"] is True

    # Unknown camera or version: said as such, a long name cut.
    r = c.post("/v1/cameras/nope/models/v0001/activate")
    assert r.status_code == 404 and r.json()["detail"] == "no camera 'nope'"
    r = c.post(f"/v1/cameras/door/models/v{'9' * 5000}/activate")
    assert r.status_code == 404 and len(r.json()["detail"]) < 200


@pytest.mark.timeout(120)
def test_a_model_scores_only_at_the_frame_rate_it_learnt(tmp_path: Path, serve_service: Callable[..., Any]) -> None:
    data = tmp_path / "data"
    _, c, service = serve_service(data, learning=learning_settings(tmp_path))
    r = c.post("/v1/cameras", json={"id": "gate", "url": "rtsp://127.0.0.1:9/a", "fps": 10, "use_shipped": False})
    assert r.status_code == 201
    service.pipeline.registry.add("gate", weights_file(tmp_path / "a.pt", 0, {"footage": {"frames": 600, "fps": 10}}))
    service.pipeline.registry.add("gate", weights_file(tmp_path / "b.pt", 1, {"footage": {"frames": 300, "fps": 5}}))
    assert c.post("/v1/cameras/gate/models/v0001/activate").json()["mode"] == "armed"
    r = c.post("/v1/cameras/gate/models/v0002/activate")  # learnt at 5 fps, the camera runs at 10
    assert r.status_code == 409 and "5 fps" in r.json()["detail"], r.text
    assert c.get("/v1/cameras/gate").json()["model"]["version"] == "v0001"

    # At another rate the camera's own model stands aside (it stays the active version), and comes back at its own.
    r = c.patch("/v1/cameras/gate", json={"fps": 5})
    assert r.status_code == 200, r.text
    cam = r.json()
    assert cam["mode"] == "unarmed" and cam["model"]["version"] == "shipped"
    assert "learnt motion at 10 fps" in cam["model"]["error"]
    assert c.get("/v1/cameras/gate/models").json()["active"] == "v0001"
    assert c.post("/v1/cameras/gate/models/v0002/activate").json()["model"]["version"] == "v0002"  # its rate
    r = c.patch("/v1/cameras/gate", json={"fps": 10})
    assert r.json()["model"]["version"] == "shipped"  # v0002 learnt at 5
    assert c.post("/v1/cameras/gate/models/v0001/activate").json()["mode"] == "armed"
    r = c.patch("/v1/cameras/gate", json={"fps": 5})
    assert r.json()["model"]["version"] == "shipped"
    r = c.patch("/v1/cameras/gate", json={"fps": 10})
    assert r.json()["model"]["version"] == "v0001" and r.json()["model"]["error"] is None

    # A registry file of the wrong shape (edited by hand) is a damaged registry (409), not an unknown camera.
    entry = '{"version": "%s", "file": "%s", "sha256": "00"}'
    for text in ("[]", '{"active": "v0001"}', '{"active": 3, "versions": []}',
                 '{"active": null, "versions": [%s]}' % (entry % ("foo", "v0001.pt")),
                 '{"active": null, "versions": [%s]}' % (entry % ("v0001", "../v0001.pt"))):
        (data / "models/gate/registry.json").write_text(text)
        r = c.get("/v1/cameras/gate/models")
        assert r.status_code == 409 and "not a model registry" in r.json()["detail"], r.text


def training_processes(data: Path) -> int:
    """Live `model.learn` processes whose run folder is under `data`."""
    n = 0
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"model.learn" in cmd and any(str(data).encode() in a for a in cmd) and alive(int(proc.name)):
            n += 1
    return n


@pytest.mark.timeout(300)
def test_cameras_added_together_train_in_turn_over_rtsp(tmp_path: Path, moving_rtsp: RtspServer,
                                                         serve_service: Callable[..., Any]) -> None:
    """Three cameras learn at once on one training slot: one trains, the others wait queued (place, ETA); a queued
    camera deleted leaves the queue; never two training processes; both that stay end armed."""
    data = tmp_path / "data"
    _, c, _ = serve_service(data, learning=learning_settings(tmp_path, max_trainings=1))
    for cam in ("a", "b", "c"):
        r = c.post("/v1/cameras", json={"id": cam, "url": moving_rtsp.url, "fps": FPS, "learn": {}})
        assert r.status_code == 201, r.text
    both_queued: list[dict[str, Any]] = []
    most_processes = 0
    deadline = time.monotonic() + scaled(250)
    while True:
        assert time.monotonic() < deadline, [c.get(f"/v1/cameras/{i}").json() for i in ("a", "b", "c")]
        cams = {cam["id"]: cam for cam in c.get("/v1/cameras").json()}
        learning = {i: cam["learning"] for i, cam in cams.items()}
        assert sum(1 for v in learning.values() if v["phase"] == "training") <= 1, learning
        most_processes = max(most_processes, training_processes(data))
        assert most_processes <= 1
        queued = sorted((v for v in learning.values() if v["phase"] == "queued"), key=lambda v: v["queue_position"])
        assert all(v["error"] is None for v in learning.values()), learning
        for i, v in learning.items():
            if v["phase"] == "queued":
                assert cams[i]["mode"] == "training" and v["eta_s"] > 0, v
        if not both_queued and len(queued) == 2:  # one trains, two wait: the first in line is deleted
            both_queued = queued
            first = next(i for i, v in learning.items() if v is queued[0])
            assert c.delete(f"/v1/cameras/{first}").status_code == 204
        if both_queued and all(cam["mode"] == "armed" for cam in cams.values()):
            break
        time.sleep(0.2)
    assert len(cams) == 2 and all(cam["model"]["version"] == "v0001" for cam in cams.values()), cams
    assert most_processes == 1  # the scan saw the trainings: its "at most one" is not for want of looking
    assert [v["queue_position"] for v in both_queued] == [1, 2], both_queued
    assert both_queued[0]["eta_s"] < both_queued[1]["eta_s"], both_queued  # the second waits for the first too
