"""`python -m service` (what `ffp serve` runs): clear one-line errors with exit code 2, and a real start/stop."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from live_server import untrained_predictor
from timing import scaled
from websockets.sync.client import connect

from model.checkpoint import atomic_save

ROOT = Path(__file__).resolve().parents[2]
KEY = "sekrit-api-key-42"
PASSWORD = "pw-never-logged"


def run_service(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def assert_one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ffp serve: error: "), p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.timeout(60)
def test_bad_config_and_missing_or_corrupt_weights_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: eighty\ncameras:\n  - id: a\n    url: 'concat:/etc/passwd'\n")
    assert_one_line_error(run_service("--config", str(bad)), "port", "cameras.0.url", "concat")
    assert_one_line_error(run_service("--config", str(tmp_path / "missing.yaml")), "missing.yaml")
    assert_one_line_error(run_service("--weights", str(tmp_path / "none.pt")), "not found", "none.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    assert_one_line_error(run_service("--weights", str(corrupt)), "corrupt.pt")


@pytest.mark.timeout(60)
def test_serves_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    weights = tmp_path / "untrained.pt"
    atomic_save(untrained_predictor().weights_blob(), weights)
    env = {**os.environ, "FFP_API_KEY": KEY, "FFP_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "service", "--weights", str(weights), "--port", "0",
                             "--data-dir", str(tmp_path / "data")], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env=env)
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        for x in proc.stderr:  # type: ignore[union-attr]
            log.append(x)
            lines.put(x)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        port = None
        deadline = time.monotonic() + scaled(40)
        while port is None and time.monotonic() < deadline:
            m = re.search(r"running on http://127\.0\.0\.1:(\d+)", lines.get(timeout=40))
            port = int(m.group(1)) if m else None
        assert port, "the service did not report its port"
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert r.json() == {"status": "ok", "cameras": 0, "pipeline_running": True}
        # Secrets in a camera URL and in the WebSocket query string must not reach the log.
        r = httpx.post(f"http://127.0.0.1:{port}/v1/cameras", headers={"X-API-Key": KEY}, timeout=10,
                       json={"id": "x", "url": f"rtsp://admin:{PASSWORD}@127.0.0.1:9/s", "open_timeout_s": 1})
        assert r.status_code == 201
        with connect(f"ws://127.0.0.1:{port}/v1/ws?api_key={KEY}", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        time.sleep(1.5)  # let the camera fail to connect (and log it)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        reader.join(5)
        text = "".join(log)
        assert "camera x added" in text and "WebSocket" in text, text
        assert KEY not in text and PASSWORD not in text, text
        assert (tmp_path / "data" / "events.db").is_file()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
