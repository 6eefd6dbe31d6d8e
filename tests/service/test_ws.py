"""WebSocket /v1/ws against a real uvicorn server and a real `websockets` client: live scores, API key,
resume after a disconnect without losing or repeating an event."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import LiveServer, serve, untrained_predictor, write_clip
from timing import scaled
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from service.api import create_app
from service.api.schemas import EventWsMessage, ScoreWsMessage, SubscribedMessage
from service.settings import load_settings
from service.wiring import build_service

KEY = "ws-key"
# 25 fps, looped: 1.2 s of a still scene, then 0.4 s of noise -> one event per 1.6 s loop.
PATTERN = "." * 30 + "#" * 10
ALERTS = {"on_threshold": 5.0, "off_threshold": 2.0, "min_duration_s": 0.08, "hold_s": 0.0, "cooldown_s": 0.0,
          "smoothing_half_life_frames": 0.0, "update_interval_s": 0.1}


@pytest.fixture(scope="module")
def clip_predictor():  # type: ignore[no-untyped-def]
    return untrained_predictor()


@pytest.fixture
def server(tmp_path: Path, clip_predictor) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    clip = write_clip(tmp_path / "loop.mp4", PATTERN)
    settings = load_settings(None, data_dir=tmp_path / "data", api_key=KEY, alerts=ALERTS,
                             cameras=[{"id": "cam", "url": str(clip), "fps": 25, "loop": True}])
    with serve(create_app(build_service(settings, predictor=clip_predictor))) as srv:
        yield srv


def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))  # type: ignore[no-any-return]


def collect_events(ws: ClientConnection, until: float, want: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while time.monotonic() < until and len(got) < want:
        msg = recv(ws)
        if msg["type"] == "event":
            EventWsMessage.model_validate(msg)
            got.append(msg)
    return got


@pytest.mark.timeout(30)
def test_scores_stream_over_websocket(server: LiveServer) -> None:
    with connect(f"{server.ws_url}?cameras=cam&kinds=scores&api_key={KEY}", open_timeout=5) as ws:
        hello = SubscribedMessage.model_validate(recv(ws))
        assert hello.cameras == ["cam"] and hello.kinds == ["scores"]
        scores = [recv(ws) for _ in range(30)]
    assert all(m["type"] in ("score", "heartbeat") for m in scores)
    scores = [m for m in scores if m["type"] == "score"]
    for m in scores:
        ScoreWsMessage.model_validate(m)
    assert {m["camera_id"] for m in scores} == {"cam"}
    idx = [m["frame_index"] for m in scores]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert all(isinstance(m["score"], float) and m["latency_ms"] >= 0 for m in scores)


@pytest.mark.timeout(20)
def test_websocket_refuses_a_bad_key_with_1008(server: LiveServer) -> None:
    for suffix, headers in (("", {}), ("?api_key=nope", {}), ("", {"X-API-Key": "nope"})):
        with connect(server.ws_url + suffix, additional_headers=headers, open_timeout=5) as ws, \
                pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008
    with connect(server.ws_url, additional_headers={"Authorization": f"Bearer {KEY}"}, open_timeout=5) as ws:
        assert recv(ws)["type"] == "subscribed"


@pytest.mark.timeout(40)
def test_resume_after_disconnect_loses_no_event(server: LiveServer) -> None:
    url = f"{server.ws_url}?kinds=events&api_key={KEY}"
    seen: list[dict[str, Any]] = []
    with connect(url + "&resume_from=0", open_timeout=5) as ws:
        assert recv(ws)["type"] == "subscribed"
        seen += collect_events(ws, time.monotonic() + scaled(15), want=4)
    assert len(seen) >= 4, "the noise segments should raise events"
    first_batch = len(seen)
    time.sleep(3.5)  # ~2 loops of the clip happen while the client is away
    with connect(f"{url}&resume_from={seen[-1]['seq']}", open_timeout=5) as ws:
        replay_hdr = None
        more: list[dict[str, Any]] = []
        deadline = time.monotonic() + scaled(15)
        while time.monotonic() < deadline and (replay_hdr is None or not any(not m["replay"] for m in more)):
            msg = recv(ws)
            if msg["type"] == "subscribed":
                replay_hdr = msg
            elif msg["type"] == "event":
                more.append(msg)
    assert replay_hdr is not None and replay_hdr["replayed"] >= 2
    assert [m["replay"] for m in more[: replay_hdr["replayed"]]] == [True] * replay_hdr["replayed"]
    assert any(not m["replay"] for m in more), "live events follow the replay"
    seen += more
    seqs = [m["seq"] for m in seen]
    assert seqs == list(range(1, len(seqs) + 1)), f"gap or duplicate at the seam: {seqs} ({first_batch})"
    kinds = {m["kind"] for m in seen}
    assert {"start", "end"} <= kinds


@pytest.mark.timeout(20)
def test_subscription_changes(server: LiveServer) -> None:
    with connect(f"{server.ws_url}?kinds=scores&api_key={KEY}", open_timeout=5) as ws:
        assert recv(ws)["type"] == "subscribed"
        ws.send(json.dumps({"type": "subscribe", "cameras": ["other"], "kinds": ["scores"]}))
        while (msg := recv(ws))["type"] != "subscribed":
            pass
        assert msg["cameras"] == ["other"]
        with pytest.raises(TimeoutError):  # no scores from "cam" any more (heartbeats come after 5 s)
            while True:
                assert recv(ws, timeout=1.5)["type"] == "heartbeat"


@pytest.mark.timeout(40)
@pytest.mark.parametrize("query, message, reason", [
    ("kinds=bogus", None, "invalid subscription"),
    ("resume_from=1180591620717411303424", None, "invalid subscription"),
    ("resume_from=-1", None, "invalid subscription"),
    ("resume_from=abc", None, "invalid subscription"),
    ("kinds=scores", "not json", "invalid message"),
    ("kinds=scores", b"\x00\x01binary", "binary frames"),
    ("kinds=scores", json.dumps({"type": "subscribe", "kinds": ["nope"]}), "invalid message"),
    ("kinds=scores", json.dumps({"type": "subscribe", "resume_from": 1180591620717411303424}), "invalid message"),
    ("kinds=scores", json.dumps({"type": "subscribe", "resume_from": "x"}), "invalid message"),
    ("kinds=scores", json.dumps({"type": "subscribe", "resume_from": True}), "invalid message"),  # true is not 1
    ("kinds=scores", "[1, 2", "invalid message"),
])
def test_invalid_input_closes_with_4400(server: LiveServer, caplog: pytest.LogCaptureFixture, query: str,
                                        message: str | bytes | None, reason: str) -> None:
    with connect(f"{server.ws_url}?{query}&api_key={KEY}", open_timeout=5) as ws, \
            pytest.raises(ConnectionClosed) as e:
        if message is not None:
            assert recv(ws)["type"] == "subscribed"
            ws.send(message)
        while True:
            recv(ws)
    assert e.value.rcvd is not None and e.value.rcvd.code == 4400 and reason in e.value.rcvd.reason
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()], "no traceback logged"


@pytest.mark.timeout(20)
def test_websocket_origin_is_checked(server: LiveServer) -> None:
    own = f"http://127.0.0.1:{server.port}"
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"):
        with connect(f"{server.ws_url}?api_key={KEY}", origin=origin, open_timeout=5) as ws, \
                pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008 and "origin" in e.value.rcvd.reason
    with connect(f"{server.ws_url}?api_key={KEY}", origin=own, open_timeout=5) as ws:  # the dashboard's page
        assert recv(ws)["type"] == "subscribed"
    with connect(f"{server.ws_url}?api_key={KEY}", open_timeout=5) as ws:  # not a browser: no Origin
        assert recv(ws)["type"] == "subscribed"


@pytest.mark.timeout(30)
def test_events_rest_routes(server: LiveServer) -> None:
    import httpx

    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as c:
        deadline = time.monotonic() + scaled(15)
        while not (ended := c.get("/v1/events", params={"active": "false"}).json()["events"]):
            assert time.monotonic() < deadline, "no event ended in time"
            time.sleep(0.3)
        ev = ended[0]
        assert ev["camera_id"] == "cam" and ev["end_ts"] >= ev["start_ts"] and ev["peak_score"] >= 5.0
        assert c.get(f"/v1/events/{ev['id']}").json() == ev
        for kind in ("snapshot", "heatmap"):
            r = c.get(ev[f"{kind}_url"])
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        assert c.get("/v1/events", params={"camera": "other"}).json() == {"events": []}
        assert c.get("/v1/events", params={"since": ev["start_ts"] + 1e6}).json() == {"events": []}
        assert len(c.get("/v1/events", params={"limit": 1}).json()["events"]) == 1
        assert c.get("/v1/events", params={"limit": 0}).status_code == 422
        for path in ("/v1/events/nope", "/v1/events/nope/snapshot.jpg", "/v1/events/nope/heatmap.jpg"):
            r = c.get(path)
            assert r.status_code == 404 and "nope" in r.json()["detail"]
