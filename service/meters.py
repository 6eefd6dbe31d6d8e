"""Small thread-safe meters for stats: event rates over a sliding window and latency percentiles."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int = 1, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        with self._lock:
            self.total += n
            self._times.extend([t] * n)
            self._trim(t)

    def rate(self, now: float | None = None) -> float:
        t = time.monotonic() if now is None else now
        with self._lock:
            self._trim(t)
            return len(self._times) / self.window_s

    def _trim(self, t: float) -> None:
        while self._times and self._times[0] < t - self.window_s:
            self._times.popleft()


class LatencyMeter:
    """EMA plus p50/p99 over the last `size` samples (milliseconds)."""

    def __init__(self, size: int = 512, alpha: float = 0.1) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._alpha = alpha
        self._ema: float | None = None
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._samples.append(ms)
            self._ema = ms if self._ema is None else self._ema + self._alpha * (ms - self._ema)

    def summary(self) -> dict[str, float | None]:
        with self._lock:
            if not self._samples:
                return {"ema": None, "p50": None, "p99": None}
            arr = np.fromiter(self._samples, dtype=np.float64)
            return {"ema": round(float(self._ema or 0.0), 3), "p50": round(float(np.percentile(arr, 50)), 3),
                    "p99": round(float(np.percentile(arr, 99)), 3)}
