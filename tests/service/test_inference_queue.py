"""The inference worker's per-camera queues: jitter is absorbed, a camera really behind drops its oldest,
a batch holds one window per camera, oldest first."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from timing import scaled

from model import FrameScores
from service.frames import ServedModel, Window
from service.inference import InferenceWorker

pytestmark = pytest.mark.timeout(20)


class InstantScorer:
    def score(self, windows: np.ndarray) -> FrameScores:
        z, cells = np.zeros(len(windows), np.float32), np.zeros((len(windows), 1), np.float32)
        return FrameScores(z, z, z, z, z, z, z, z, np.zeros((len(windows), 4, 4), np.float32), cells, cells)


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


INSTANT = ServedModel(InstantScorer(), "instant", None)  # type: ignore[arg-type]


def window(cam: str, i: int, model: ServedModel = INSTANT) -> Window:
    now = time.time()
    return Window(cam, i, now, np.zeros((5, 1, 8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), model, media_ts=now)


def test_live_queue_absorbs_a_burst_and_drops_oldest_beyond_it() -> None:
    batches: list[list[tuple[str, int]]] = []
    inf = InferenceWorker(lambda b, s, ms: batches.append([(w.camera_id, w.frame_index) for w in b]),
                          max_wait_ms=0, queue_per_camera=2)
    stop = threading.Event()
    for cam in ("a", "b"):
        inf.register(cam)
    # Before inference starts: "a" sends two windows back to back (a late frame, then an on-time one).
    inf.submit(window("a", 0), block=False, stop=stop)
    inf.submit(window("a", 1), block=False, stop=stop)
    assert inf.camera_stats("a")["frames_skipped"] == 0 and inf.pending() == 2
    # "b" is really behind: three windows, the oldest is dropped and counted.
    for i in range(3):
        inf.submit(window("b", i), block=False, stop=stop)
    assert inf.camera_stats("b")["frames_skipped"] == 1 and inf.pending() == 4
    inf.start()
    try:
        wait_for(lambda: inf.pending() == 0 and sum(map(len, batches)) == 4)
    finally:
        inf.stop()
    # One window per camera per batch, each camera in order; b's frame 0 never scored.
    assert all(len({c for c, _ in b}) == len(b) for b in batches)
    scored = [x for b in batches for x in b]
    assert [i for c, i in scored if c == "a"] == [0, 1]
    assert [i for c, i in scored if c == "b"] == [1, 2]
    assert len(batches) == 2


def test_blocking_camera_waits_for_room_instead_of_dropping() -> None:
    inf = InferenceWorker(lambda b, s, ms: None, queue_per_camera=1)
    inf.register("f")
    stop = threading.Event()
    inf.submit(window("f", 0), block=True, stop=stop)
    t = threading.Thread(target=inf.submit, args=(window("f", 1),), kwargs={"block": True, "stop": stop})
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and inf.pending() == 1  # waiting, nothing dropped
    inf.start()
    t.join(5)
    inf.stop()
    assert not t.is_alive() and inf.camera_stats("f")["frames_skipped"] == 0


def test_queue_size_is_validated() -> None:
    with pytest.raises(ValueError, match="queue_per_camera"):
        InferenceWorker(lambda b, s, ms: None, queue_per_camera=0)


def test_a_camera_catching_up_queues_its_burst_within_a_bound() -> None:
    inf = InferenceWorker(lambda b, s, ms: None, queue_per_camera=2, catch_up_queue_per_camera=6,
                          catch_up_s=scaled(0.5))
    inf.register("c")
    stop = threading.Event()
    for i in range(6):  # the burst at connect: kept, not dropped
        inf.submit(window("c", i), block=False, stop=stop, catching_up=True)
    assert inf.pending() == 6 and inf.camera_stats("c")["frames_skipped"] == 0
    for i in range(6, 8):  # a longer burst than the bound: the oldest go
        inf.submit(window("c", i), block=False, stop=stop, catching_up=True)
    assert inf.pending() == 6 and inf.camera_stats("c")["frames_skipped"] == 2
    time.sleep(scaled(0.6))  # the allowance ends: a camera simply behind queues 2 windows again
    inf.submit(window("c", 8), block=False, stop=stop)
    assert inf.pending() == 2 and inf.camera_stats("c")["frames_skipped"] == 7


class CountingScorer(InstantScorer):
    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, windows: np.ndarray) -> FrameScores:
        self.calls.append(len(windows))
        return super().score(windows)


def test_one_forward_per_model_with_max_batch_each_oldest_first() -> None:
    x, y = CountingScorer(), CountingScorer()
    mx, my = ServedModel(x, "x", None), ServedModel(y, "y", None)  # type: ignore[arg-type]
    forwards: list[tuple[str, list[str]]] = []
    inf = InferenceWorker(lambda b, s, ms: forwards.append((b[0].model.version, [w.camera_id for w in b])),
                          max_batch=2, max_wait_ms=0)
    stop = threading.Event()
    for cam, model in (("a", mx), ("b", my), ("c", mx), ("d", mx)):  # submitted oldest first
        inf.register(cam)
        inf.submit(window(cam, 0, model), block=False, stop=stop)
        time.sleep(0.002)
    inf.start()
    try:
        wait_for(lambda: inf.pending() == 0 and len(forwards) == 3)
    finally:
        inf.stop()
    # Round 1: x's two oldest (a, c) in one forward, y's one; d (x's third) waits for round 2.
    assert forwards == [("x", ["a", "c"]), ("y", ["b"]), ("x", ["d"])]
    assert x.calls == [2, 1] and y.calls == [1]
    assert inf.stats()["batches"] == 3


def test_drop_stale_forgets_windows_of_a_swapped_model() -> None:
    inf = InferenceWorker(lambda b, s, ms: None)
    old, new = INSTANT, ServedModel(InstantScorer(), "new", None)  # type: ignore[arg-type]
    stop = threading.Event()
    inf.register("a")
    inf.register("b")
    inf.submit(window("a", 0, old), block=False, stop=stop)
    inf.submit(window("a", 1, new), block=False, stop=stop)
    inf.submit(window("b", 0, old), block=False, stop=stop)
    assert inf.drop_stale("a", new) == 1
    assert inf.pending() == 2 and inf.camera_stats("a")["frames_skipped"] == 0
    assert inf.drop_stale("c", new) == 0
