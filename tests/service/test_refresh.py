"""`learning.refresh_days` in the service (real RTSP, real uvicorn, real training processes with budgets of
seconds, refresh_days of seconds): an armed camera's own model is refreshed from its recent footage and the new
version activated while the camera stays armed; rollback works and restarts the clock; a restart keeps the clock;
a refresh that fails leaves the camera armed on its old model and says why."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import RtspServer
from test_learning import FPS, learning_settings, wait_for
from test_registry import weights_file
from websockets.sync.client import connect

from service.refresh import DAY_S

REFRESH_DAYS = 8.0 / DAY_S  # due 8 s after the active model was made


def refresh_settings(tmp_path: Path, **over: Any) -> dict[str, Any]:
    return learning_settings(tmp_path, refresh_days=REFRESH_DAYS, refresh_train_minutes=0.1, refresh_margin_s=0.5,
                             **over)


@pytest.mark.timeout(300)
def test_refresh_activates_a_new_version_while_armed_and_rollback_and_restart_keep_the_clock(
        tmp_path: Path, serve_service: Callable[..., Any]) -> None:
    rtsp = RtspServer(pattern="ball").start()
    data = tmp_path / "data"
    # The verdict is not what this test checks (test_refresh_units does): a seconds-long fine-tune may lose a
    # little PSNR on the ball, so any drop is allowed here.
    settings = refresh_settings(tmp_path, refresh_max_psnr_drop_db=100.0)
    try:
        _, c, service = serve_service(data, learning=settings)
        r = c.post("/v1/cameras", json={"id": "gate", "url": rtsp.url, "fps": FPS, "learn": {}})
        assert r.status_code == 201, r.text
        cam = wait_for(lambda: c.get("/v1/cameras/gate").json(), lambda j: j["mode"] == "armed", 200, "armed")
        v1 = c.get("/v1/cameras/gate/models").json()["versions"][0]
        assert cam["learning"]["next_refresh"] == pytest.approx(v1["created"] + 8.0)
        seen: list[dict[str, Any]] = []

        def status() -> dict[str, Any]:
            j = c.get("/v1/cameras/gate").json()
            seen.append(j)
            return j
        wait_for(status, lambda j: j["model"]["version"] == "v0002", 200, "the refreshed model active")
        during = [j for j in seen if j["learning"]["refresh"]]
        assert during, "the refresh's progress was never shown"
        assert all(j["mode"] == "armed" and j["model"]["version"] == "v0001" for j in during)  # old model scores
        assert all(j["mode"] == "armed" for j in seen)
        cam = c.get("/v1/cameras/gate").json()
        last = cam["learning"]["last_refresh"]
        assert last["activated"] and last["version"] == "v0002" and last["base"] == "v0001", last
        assert last["frames"] >= 110 and last["heldout_psnr"] > 0 and last["base_heldout_psnr"] > 0
        assert not cam["learning"]["refresh"]
        models = c.get("/v1/cameras/gate/models").json()
        v2 = models["versions"][1]
        assert models["active"] == "v0002" and [v["version"] for v in models["versions"]] == ["v0001", "v0002"]
        assert v2["footage"]["frames"] == last["frames"]
        run = data / "cameras/gate/runs" / last["run"]
        assert (run / "final.pt").is_file() and not (run / "footage").exists()  # its footage copy is gone
        assert (data / "cameras/gate/footage").is_dir()  # the footage of the first model is untouched

        t_rollback = time.time()
        r = c.post("/v1/cameras/gate/models/v0001/activate")  # rollback: the clock starts again from now
        assert r.status_code == 200 and r.json()["model"]["version"] == "v0001"
        nxt = wait_for(lambda: c.get("/v1/cameras/gate").json()["learning"]["next_refresh"],
                       lambda n: n >= t_rollback + 8.0, 10, "the clock restarted")
        assert nxt - 8.0 <= time.time()
        service.stop()

        _, c2, _ = serve_service(data, learning={**settings, "refresh_days": 1.0})  # a restart: the same clock
        cam2 = c2.get("/v1/cameras/gate").json()
        assert cam2["model"]["version"] == "v0001" and cam2["mode"] == "armed"
        saved = json.loads((data / "cameras/gate/refresh.json").read_text())
        assert saved["version"] == "v0001" and cam2["learning"]["next_refresh"] == pytest.approx(
            max(saved["since"], saved["last_attempt"]) + DAY_S)
        assert saved["since"] == pytest.approx(nxt - 8.0)  # not reset by the restart
    finally:
        rtsp.kill()


@pytest.mark.timeout(200)
def test_a_refresh_that_fails_leaves_the_camera_armed_on_its_model(tmp_path: Path,
                                                                     serve_service: Callable[..., Any]) -> None:
    rtsp = RtspServer(pattern="gradient").start()  # a frozen picture: its footage is refused, as when learning
    try:
        srv, c, service = serve_service(tmp_path / "data", learning=refresh_settings(tmp_path))
        r = c.post("/v1/cameras", json={"id": "still", "url": rtsp.url, "fps": FPS, "use_shipped": False})
        assert r.status_code == 201, r.text
        service.pipeline.registry.add("still", weights_file(tmp_path / "own.pt", 0))
        with connect(f"{srv.ws_url}?cameras=still", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
            assert c.post("/v1/cameras/still/models/v0001/activate").status_code == 200
            deadline = time.monotonic() + 150
            while True:
                assert time.monotonic() < deadline, c.get("/v1/cameras/still").json()
                msg = json.loads(ws.recv(timeout=60))
                if msg["type"] == "camera" and (msg["learning"] or {}).get("last_refresh"):
                    break
        assert msg["mode"] == "armed" and msg["model"] == "v0001"
        last = msg["learning"]["last_refresh"]
        assert not last["activated"] and "refresh failed" in last["error"] and "frozen" in last["error"], last
        cam = c.get("/v1/cameras/still").json()
        assert cam["mode"] == "armed" and cam["model"]["version"] == "v0001"
        assert "refresh failed" in cam["last_error"] and "frozen" in cam["last_error"]
        assert cam["learning"]["next_refresh"] > last["time"]  # not retried at once: 8 s after the attempt
        assert [v["version"] for v in c.get("/v1/cameras/still/models").json()["versions"]] == ["v0001"]
    finally:
        rtsp.kill()
