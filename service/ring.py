"""The last k+1 preprocessed frames of one camera: each frame is preprocessed once and reused by k+1 windows."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np

from .frames import Window


class RingBuffer:
    """deque(maxlen=k+1): the oldest frame falls off when a new one arrives."""

    def __init__(self, camera_id: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"ring size must be >= 1, got {size}")
        self.camera_id = camera_id
        self.size = size
        self._frames: deque[np.ndarray] = deque(maxlen=size)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def push(self, pre: np.ndarray, raw: np.ndarray, index: int, ts: float) -> Window | None:
        """Add one preprocessed frame; returns the window ending at it once the ring is full."""
        with self._lock:
            self._frames.append(pre)
            if len(self._frames) < self.size:
                return None
            data = np.stack(self._frames)  # (k+1, C, H, W): a copy, so later pushes do not alter it
        return Window(self.camera_id, index, ts, data, raw)

    def clear(self) -> None:
        """After a reconnect the history is from another time: never predict across the gap."""
        with self._lock:
            self._frames.clear()
