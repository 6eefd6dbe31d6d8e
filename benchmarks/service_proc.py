"""The service process a benchmark started (`python -m service`): waiting for it to serve, and stopping it the way
an operator would."""
from __future__ import annotations

import signal
import subprocess
import time

import httpx


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (a graceful shutdown), then kill it when it has not exited within 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_until_healthy(http: httpx.Client, proc: subprocess.Popen[bytes], timeout_s: float,
                       poll_s: float = 0.2) -> None:
    """Poll /healthz until it answers 200; RuntimeError when the process exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the service did not start (exit code {proc.poll()})")
        time.sleep(poll_s)
