"""Upload cost is bounded (POST /v1/score against real uvicorn): frame size and count refused from the header
before decoding and counted while decoding (headers lie), a bounded queue answering 503 with Retry-After, and a
client that disconnects frees its slot."""
from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from live_server import serve, untrained_predictor
from timing import scaled

from model import FrameScores, Predictor
from service.api import create_app
from service.settings import load_settings
from service.wiring import build_service

pytestmark = pytest.mark.timeout(90)
KEY = "k"
BATCH_S = 0.3  # the slowed predictor's time per batch: a clip's scoring time is predictable


@pytest.fixture(scope="module")
def slow_predictor() -> Iterator[tuple[Predictor, list[float]]]:
    """The untrained predictor, BATCH_S per batch; `calls` records when each batch ran."""
    p = untrained_predictor()
    calls: list[float] = []
    fast = p.score

    def score(windows: np.ndarray) -> FrameScores:
        calls.append(time.monotonic())
        time.sleep(BATCH_S)
        return fast(windows)

    slow = dataclasses.replace(p)
    slow.score = score  # type: ignore[method-assign]
    yield slow, calls


def start(tmp_path: Path, predictor: Predictor, **kw: Any) -> Any:
    settings = load_settings(None, data_dir=tmp_path / "data", api_key=KEY, **kw)
    return serve(create_app(build_service(settings, predictor=predictor)), settings=settings)


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.avi\"\r\n"
            f"Content-Type: video/x-msvideo\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def raw_post(port: int, body: bytes, ctype: str, send: int | None = None) -> socket.socket:
    """POST /v1/score on a raw socket; sends the first `send` bytes of the body only (all when None)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: {ctype}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) if send is None else send])
    return s


def mjpg(path: Path, n: int, size: tuple[int, int] = (160, 120), fps: float = 25.0) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    rng = np.random.default_rng(0)
    for i in range(n):
        out.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if i % 7 == 0
                  else np.full((size[1], size[0], 3), 100, np.uint8))
    out.release()
    return path


def lying_avi(path: Path, frames: int, claims: int) -> Path:
    """An MJPG AVI holding `frames` frames whose header (avih and strh) says `claims`."""
    data = bytearray(mjpg(path, frames).read_bytes())
    for tag, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32)):  # dwTotalFrames, dwLength
        struct.pack_into("<I", data, data.find(tag) + offset, claims)
    path.write_bytes(bytes(data))
    return path


def test_huge_frames_refused_before_decoding_and_lying_header_cut_off_while_decoding(
        tmp_path: Path, slow_predictor: tuple[Predictor, list[float]]) -> None:
    p, calls = slow_predictor
    big = tmp_path / "big.mp4"
    out = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*"mp4v"), 120, (4096, 4096))
    for _ in range(2):
        out.write(np.zeros((4096, 4096, 3), np.uint8))
    out.release()
    assert big.stat().st_size < 500_000  # tiny on the wire: it is about dimensions
    liar = lying_avi(tmp_path / "liar.avi", frames=80, claims=5)
    assert cv2.VideoCapture(str(liar)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    with start(tmp_path, p, max_clip_frames=40) as srv, \
            httpx.Client(base_url=srv.url, headers={"X-API-Key": KEY}, timeout=30) as c:
        calls.clear()
        r = c.post("/v1/score", files={"file": ("big.mp4", big.read_bytes(), "video/mp4")})
        assert r.status_code == 422, r.text
        assert "4096x4096" in r.json()["detail"] and "before decoding" in r.json()["detail"]
        assert calls == [], "nothing was scored"

        r = c.post("/v1/score", files={"file": ("liar.avi", liar.read_bytes(), "video/x-msvideo")})
        assert r.status_code == 422, r.text
        assert "more than 40 frames" in r.json()["detail"] and "while decoding" in r.json()["detail"]
        assert len(calls) <= 40 // 8 + 1, "cut off at the limit, not after decoding the whole clip"

        ok = mjpg(tmp_path / "ok.avi", 30)
        r = c.post("/v1/score", files={"file": ("ok.avi", ok.read_bytes(), "video/x-msvideo")})
        assert r.status_code == 200, r.text


def test_queue_full_is_503_with_retry_after(tmp_path: Path, slow_predictor: tuple[Predictor, list[float]]) -> None:
    body, ctype = multipart(mjpg(tmp_path / "c.avi", 30).read_bytes())
    with start(tmp_path, slow_predictor[0], upload_workers=1, upload_queue=1) as srv:
        # Two uploads hold the two places (1 scoring + 1 waiting) while their bodies are still arriving.
        holders = [raw_post(srv.port, body, ctype, send=len(body) // 2) for _ in range(2)]
        time.sleep(0.5)
        try:
            r = httpx.post(f"{srv.url}/v1/score", headers={"X-API-Key": KEY, "Content-Type": ctype}, content=body,
                           timeout=10)
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) >= 1 and "too many uploads" in r.json()["detail"]
            assert httpx.get(f"{srv.url}/healthz", timeout=2).status_code == 200
        finally:
            for s in holders:
                s.close()
        time.sleep(0.5)  # their places are freed with their connections
        r = httpx.post(f"{srv.url}/v1/score", headers={"X-API-Key": KEY, "Content-Type": ctype}, content=body,
                       timeout=30)
        assert r.status_code == 200, r.text


def test_a_disconnecting_client_frees_the_slot(tmp_path: Path,
                                               slow_predictor: tuple[Predictor, list[float]]) -> None:
    p, calls = slow_predictor
    long_body, ctype = multipart(mjpg(tmp_path / "long.avi", 400).read_bytes())  # ~50 batches: ~15 s to score
    short_body, _ = multipart(mjpg(tmp_path / "short.avi", 20).read_bytes())
    with start(tmp_path, p, upload_workers=1, upload_queue=1, max_clip_seconds=60) as srv:
        calls.clear()
        gone = raw_post(srv.port, long_body, ctype)
        deadline = time.monotonic() + scaled(20)
        while len(calls) < 2:  # scoring has started
            assert time.monotonic() < deadline, "the long clip was never scored"
            time.sleep(0.05)
        result: dict[str, Any] = {}

        def next_upload() -> None:
            r = httpx.post(f"{srv.url}/v1/score", headers={"X-API-Key": KEY, "Content-Type": ctype},
                           content=short_body, timeout=60)
            result["status"], result["at"] = r.status_code, time.monotonic()

        waiting = threading.Thread(target=next_upload)
        waiting.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        gone.close()  # the first client gives up
        waiting.join(60)
        assert result["status"] == 200
        took = result["at"] - t0
        # Scored promptly: the rest of the long clip (~13 s) was not; the short one needs ~3 batches.
        assert took < 6.0, f"the next upload took {took:.1f} s after the first client left"
        long_batches = [t for t in calls if t < result["at"]]
        assert len(long_batches) < 30, "the long clip stopped when its client left"
