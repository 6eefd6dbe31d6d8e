"""The service process a benchmark started (`python -m service`): stopping it the way an operator would."""
from __future__ import annotations

import signal
import subprocess


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (a graceful shutdown), then kill it when it has not exited within 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
