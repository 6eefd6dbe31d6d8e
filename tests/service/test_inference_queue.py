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
from service.frames import Window
from service.inference import InferenceWorker

pytestmark = pytest.mark.timeout(20)


class InstantScorer:
    def score(self, windows: np.ndarray) -> FrameScores:
        z = np.zeros(len(windows), np.float32)
        return FrameScores(z, z, z, z, z, z, z, z, np.zeros((len(windows), 4, 4), np.float32))


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def window(cam: str, i: int) -> Window:
    return Window(cam, i, time.time(), np.zeros((5, 1, 8, 8), np.float32), np.zeros((8, 8, 3), np.uint8))


def test_live_queue_absorbs_a_burst_and_drops_oldest_beyond_it() -> None:
    batches: list[list[tuple[str, int]]] = []
    inf = InferenceWorker(InstantScorer(), lambda b, s, ms: batches.append([(w.camera_id, w.frame_index) for w in b]),
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
    inf = InferenceWorker(InstantScorer(), lambda b, s, ms: None, queue_per_camera=1)
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
        InferenceWorker(InstantScorer(), lambda b, s, ms: None, queue_per_camera=0)


def test_a_camera_catching_up_queues_its_burst_within_a_bound() -> None:
    inf = InferenceWorker(InstantScorer(), lambda b, s, ms: None, queue_per_camera=2, catch_up_queue_per_camera=6,
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
