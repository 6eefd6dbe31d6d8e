"""GET /metrics against a real uvicorn server and a real pipeline scoring a looped file camera: the counters move
between two scrapes, the histograms have observations, and the API key guards it unless metrics_public."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer, serve, untrained_predictor, write_clip
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from timing import scaled

from model import Predictor
from service.api import create_app
from service.frames import REPORTED_METRICS, EventMessage, ScoreMessage
from service.hub import Hub, Subscriber
from service.metrics import learning_progress
from service.settings import load_settings
from service.wiring import build_service

Families = dict[str, list[Sample]]
KEY = "metrics-key"
PATTERN = "." * 30 + "#" * 10  # 25 fps, looped: a still scene, then noise -> an event each loop
ALERTS = {"on_threshold": 5.0, "off_threshold": 2.0, "min_duration_s": 0.08, "hold_s": 0.0, "cooldown_s": 0.0,
          "smoothing_half_life_frames": 0.0, "update_interval_s": 0.1}


@pytest.fixture(scope="module")
def clip_predictor():  # type: ignore[no-untyped-def]
    return untrained_predictor()


def start(tmp_path: Path, predictor: Predictor, **settings: object) -> AbstractContextManager[LiveServer]:
    clip = write_clip(tmp_path / "loop.mp4", PATTERN)
    s = load_settings(None, data_dir=tmp_path / "data", api_key=KEY, alerts=ALERTS,
                      cameras=[{"id": "cam", "url": str(clip), "fps": 25, "loop": True}], **settings)
    return serve(create_app(build_service(s, predictor=predictor)))


@pytest.fixture
def server(tmp_path: Path, clip_predictor) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with start(tmp_path, clip_predictor) as srv:
        yield srv


def scrape(client: httpx.Client) -> Families:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(families: Families, family: str, sample: str, **labels: str) -> float:
    found = [s.value for s in families[family] if s.name == sample and all(s.labels.get(k) == v
                                                                          for k, v in labels.items())]
    assert len(found) == 1, (family, sample, labels, families.get(family))
    return found[0]


def wait_for(client: httpx.Client, ok: Callable[[Families], bool], timeout: float = 20.0) -> Families:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        m = scrape(client)
        if ok(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.2)


@pytest.mark.timeout(60)
def test_metrics_move_between_scrapes(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as c:
        first = wait_for(c, lambda m: value(m, "ffp_frames_scored", "ffp_frames_scored_total", camera="cam") > 0)
        scored = value(first, "ffp_frames_scored", "ffp_frames_scored_total", camera="cam")
        assert scored > 0
        second = wait_for(c, lambda m: value(m, "ffp_frames_scored", "ffp_frames_scored_total", camera="cam")
                          > scored and any(s.labels.get("kind") == "start" for s in m["ffp_events"]))
    assert value(second, "ffp_frames_scored", "ffp_frames_scored_total", camera="cam") > scored
    assert value(second, "ffp_frames_captured", "ffp_frames_captured_total", camera="cam") >= scored
    assert value(second, "ffp_camera_state", "ffp_camera_state", camera="cam", state="live") == 1
    assert value(second, "ffp_camera_state", "ffp_camera_state", camera="cam", state="stalled") == 0
    assert value(second, "ffp_inference_state", "ffp_inference_state", state="running") == 1
    assert value(second, "ffp_websocket_clients", "ffp_websocket_clients") == 0
    assert value(second, "ffp_websocket_dropped_scores", "ffp_websocket_dropped_scores_total") == 0
    assert value(second, "ffp_events", "ffp_events_total", camera="cam", kind="start") >= 1
    batches = value(second, "ffp_inference_batch_size", "ffp_inference_batch_size_count")
    assert batches > 0
    assert value(second, "ffp_inference_batch_size", "ffp_inference_batch_size_sum") >= batches  # >= 1 each
    assert value(second, "ffp_inference_batch_seconds", "ffp_inference_batch_seconds_count") == batches
    assert value(second, "ffp_inference_batch_seconds", "ffp_inference_batch_seconds_bucket", le="+Inf") == batches
    published = value(second, "ffp_capture_to_websocket_seconds", "ffp_capture_to_websocket_seconds_count",
                      camera="cam")
    assert published > 0
    assert value(second, "ffp_capture_to_websocket_seconds", "ffp_capture_to_websocket_seconds_sum",
                 camera="cam") > 0

    # A removed camera's series go with it: a site that adds and removes cameras does not grow its metrics.
    def cams(m: Families) -> list[str]:
        return [f for f in ("ffp_events", "ffp_capture_to_websocket_seconds", "ffp_frames_scored")
                if any(x.labels.get("camera") == "cam" for x in m.get(f, []))]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30) as c:
        assert c.delete("/v1/cameras/cam").status_code == 204
        # Its messages still in flight (the end of its open event) are counted, and gone at the next scrape.
        gone = wait_for(c, lambda m: not cams(m), timeout=5)
    assert not cams(gone)


@pytest.mark.timeout(30)
def test_metrics_need_the_api_key(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for headers in ({}, {"X-API-Key": "wrong"}):
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 401 and "API key" in r.json()["detail"]
        assert c.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.timeout(30)
def test_metrics_public_serves_without_the_key(tmp_path: Path, clip_predictor) -> None:  # type: ignore[no-untyped-def]
    with start(tmp_path, clip_predictor, metrics_public=True) as srv, \
            httpx.Client(base_url=srv.url, timeout=10) as c:
        m = scrape(c)
        assert "ffp_frames_scored" in m
        assert c.get("/v1/stats").status_code == 401  # only /metrics is public


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    predictor = untrained_predictor()
    a = create_app(build_service(load_settings(None, data_dir=tmp_path / "a"), predictor=predictor))
    b = create_app(build_service(load_settings(None, data_dir=tmp_path / "b"), predictor=predictor))
    a.state.ffp.metrics.batch_size.observe(3)
    count = [s.value for s in b.state.ffp.metrics.batch_size.collect()[0].samples if s.name.endswith("_count")]
    assert count == [0]


@pytest.mark.timeout(10)
def test_hub_counts_drops_of_departed_clients_and_reports_each_dispatch() -> None:
    """The dropped-scores counter never goes down when a slow client leaves (a Prometheus counter), and the
    dispatch hook sees every message once, whether or not anyone subscribed."""
    def score(i: int) -> ScoreMessage:
        return ScoreMessage("a", i, 1.0, 0.5, 0.5, dict.fromkeys(REPORTED_METRICS, 0.1), 5.0)

    async def main() -> None:
        seen: list[ScoreMessage | EventMessage] = []
        hub = Hub(asyncio.get_running_loop(), on_dispatch=seen.append)
        slow = Subscriber(max_scores=2)
        leave = hub.subscribe(slow)
        for i in range(5):
            hub.publish(score(i))
        await asyncio.sleep(0.05)  # the dispatches run on the loop
        assert slow.dropped_scores == 3 and hub.stats()["dropped_scores_total"] == 3
        leave()
        hub.publish(score(5))
        await asyncio.sleep(0.05)
        assert hub.stats() == {"clients": 0, "published": 6, "dropped_scores": 0, "dropped_scores_total": 3,
                               "slow_closes": 0}
        assert [m.frame_index for m in seen if isinstance(m, ScoreMessage)] == list(range(6))

    asyncio.run(main())


def test_learning_progress_by_phase() -> None:
    assert learning_progress({"phase": "recording", "frames_recorded": 30, "frames_wanted": 120}) == 0.25
    assert learning_progress({"phase": "training", "minutes": 3.0, "train_minutes": 15.0}) == pytest.approx(0.2)
    assert learning_progress({"phase": "queued", "minutes": None, "train_minutes": 15.0}) == 0.0
    # a training resumed after a restart waits for its slot with the minutes it spent
    assert learning_progress({"phase": "queued", "minutes": 6.0, "train_minutes": 15.0}) == pytest.approx(0.4)
    assert learning_progress({"phase": "done"}) == 1.0 and learning_progress({"phase": "failed"}) == 0.0
