"""End to end with a real RTSP camera: a camera added over REST streams scores over the WebSocket, and an
anomaly injected into the live stream arrives as an event (and is stored, with its images)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TEST_FPS, RtspServer
from live_server import serve
from timing import scaled
from websockets.sync.client import connect

from model import Predictor
from service.api import create_app
from service.api.schemas import EventWsMessage, ScoreWsMessage
from service.settings import load_settings
from service.wiring import build_service


@pytest.mark.timeout(40)
def test_rtsp_camera_scores_and_event_over_websocket(tmp_path: Path, rtsp_server: RtspServer,
                                                     predictor: Predictor) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data", alerts={"min_duration_s": 0.2, "hold_s": 0.2})
    app = create_app(build_service(settings, predictor=predictor))
    with serve(app) as srv, httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.post("/v1/cameras", json={"id": "gate", "url": rtsp_server.url, "fps": TEST_FPS})
        assert r.status_code == 201, r.text
        with connect(f"{srv.ws_url}?cameras=gate", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
            scores: list[dict[str, Any]] = []
            start = None
            deadline = time.monotonic() + scaled(30)
            while start is None and time.monotonic() < deadline:
                msg = json.loads(ws.recv(timeout=10))
                if msg["type"] == "score":
                    ScoreWsMessage.model_validate(msg)
                    scores.append(msg)
                    if len(scores) == 5:
                        assert max(m["smoothed"] for m in scores) < settings.alerts.on_threshold
                        rtsp_server.switch("snow")  # the anomaly, injected into the live stream
                elif msg["type"] == "event":
                    start = EventWsMessage.model_validate(msg)
        assert start is not None and start.kind == "start" and start.event.camera_id == "gate"
        assert len(scores) >= 5 and all(m["camera_id"] == "gate" for m in scores)
        assert c.get("/v1/cameras/gate").json()["state"] == "live"
        events = c.get("/v1/events", params={"camera": "gate"}).json()["events"]
        assert [e["id"] for e in events] == [start.event.id]
        snap = c.get(f"/v1/events/{start.event.id}/snapshot.jpg")
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
