"""`python -m service` (what `ffp serve` runs): clear one-line errors with exit code 2, and a real start/stop."""
from __future__ import annotations

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

from model.weights import atomic_save

ROOT = Path(__file__).resolve().parents[2]


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
    proc = subprocess.Popen([sys.executable, "-m", "service", "--weights", str(weights), "--port", "0",
                             "--data-dir", str(tmp_path / "data")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        port = None
        deadline = time.monotonic() + 40
        while port is None and time.monotonic() < deadline:
            m = re.search(r"running on http://127\.0\.0\.1:(\d+)", lines.get(timeout=40))
            port = int(m.group(1)) if m else None
        assert port, "the service did not report its port"
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert r.json() == {"status": "ok", "cameras": 0, "pipeline_running": True}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert (tmp_path / "data" / "events.db").is_file()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
