"""Real parts for the API tests: a uvicorn server in a thread on a free port, a synthetic clip whose anomalies
are known, and an untrained predictor calibrated so those anomalies cross the alert thresholds."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import torch
from timing import scaled

from model import Calibration, Predictor, ScoreConfig, get_preset
from model.scoring import METRICS
from model.unet import Generator
from service.api import create_app
from service.settings import Settings, load_settings
from service.wiring import build_service

W, H = 160, 120


def normal_frame() -> np.ndarray:
    """A still scene: the predictor's error on it is small and constant."""
    x = np.linspace(40, 200, W, dtype=np.float32)
    img = np.tile(x, (H, 1)).astype(np.uint8)
    cv2.rectangle(img, (50, 40), (90, 80), 230, -1)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def write_clip(path: Path, pattern: str, fps: float = 25.0, seed: int = 0) -> Path:
    """pattern: one char per frame, '.' = the still scene, '#' = white noise (an anomaly). mp4v in .mp4."""
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    assert out.isOpened()
    still = normal_frame()
    for c in pattern:
        out.write(still if c == "." else rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    out.release()
    return path


def moving_square(n: int, shape: tuple[int, int], rows: slice, width: int, step: int, span: int) -> list[np.ndarray]:
    """n frames of a bright square (`rows` by `width` px) on grey, moving `step` px per frame and wrapping after
    `span` px: motion a predictor can learn, and that passes a motion check."""
    frames = []
    for i in range(n):
        f = np.full((*shape, 3), 40, np.uint8)
        x = 4 + (step * i) % span
        f[rows, x:x + width] = 220
        frames.append(f)
    return frames


def untrained_predictor() -> Predictor:
    """The lite architecture with random weights, calibrated on the still scene vs. noise so that the
    still scene scores z ~ 0 and noise z ~ 10 (alerts with on_threshold 5 fire on noise only)."""
    torch.manual_seed(0)
    config = get_preset("lite", num_frames=4)
    dummy = Calibration(mean={k: 0.0 for k in METRICS}, std={k: 1.0 for k in METRICS}, quantiles={},
                        frames=0, source="test")
    p = Predictor(config, Generator(config).eval(), None, dummy, ScoreConfig(), {"name": "untrained"},
                  torch.device("cpu"), "fp32")
    k = config.num_frames
    still = p.preprocess(normal_frame())
    rng = np.random.default_rng(1)
    noise = p.preprocess(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    quiet = p.score(np.stack([still] * (k + 1))[None]).anomaly[0]
    loud = p.score(np.stack([still] * k + [noise])[None]).anomaly[0]
    std = max(float(loud - quiet) / 10.0, 1e-3)
    cal = Calibration(mean={**{m: 0.0 for m in METRICS}, "anomaly": float(quiet)},
                      std={**{m: 1.0 for m in METRICS}, "anomaly": std}, quantiles={}, frames=1, source="test")
    return p.with_calibration(cal)


@dataclass
class LiveServer:
    server: Any
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"


@contextlib.contextmanager
def serve(app: Any, timeout: float = 20.0, settings: Settings | None = None) -> Iterator[LiveServer]:
    """Run `app` with uvicorn on 127.0.0.1 and a free port in a thread; stop it (and its lifespan) after.
    With `settings`, the server has the connection limits of settings.http (service.server), as in production."""
    import uvicorn

    from service.server import server_config

    where: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "log_level": "warning", "lifespan": "on"}
    config = uvicorn.Config(app, **where) if settings is None else server_config(app, settings, **where)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + scaled(timeout)
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(server, thread, port)
    finally:
        server.should_exit = True
        thread.join(timeout)


def serve_api(tmp_path: Path, predictor: Predictor, **settings: Any) -> contextlib.AbstractContextManager[LiveServer]:
    """serve() the whole service (build_service, create_app) with load_settings(data_dir=tmp_path / "data")."""
    service = build_service(load_settings(None, data_dir=tmp_path / "data", **settings), predictor=predictor)
    return serve(create_app(service))


def api_client(server: LiveServer, key: str, timeout: float = 20) -> httpx.Client:
    """An httpx client of `server` that sends `key` as X-API-Key."""
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=timeout)
