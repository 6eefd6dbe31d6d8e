"""The last k*stride+1 preprocessed frames of one camera: each frame is preprocessed once and reused by k+1
windows. A window is cut from the buffer by the model's own rule (model.config.window_rows), the one a clip
uses too (model.clip.window_from_buffer), so a live stream and an uploaded clip give every frame the same
window."""
from __future__ import annotations

import itertools
import threading
from collections import deque

import numpy as np

from model import window_from_buffer

from .frames import ServedModel, Window

# Run numbers are unique across rings: a camera re-made by a PATCH has a new ring, and a window of its old one still
# in flight must not pass for the new ring's run.
_RUNS = itertools.count(1)


class RingBuffer:
    """deque(maxlen=k*stride+1): the oldest frame falls off when a new one arrives."""

    def __init__(self, camera_id: str, num_frames: int, stride: int = 1) -> None:
        self.camera_id = camera_id
        self._lock = threading.Lock()
        self.run = 0  # which unbroken run of frames the history holds: a new number at each restart of it
        self.resize(num_frames, stride)

    def resize(self, num_frames: int, stride: int = 1) -> None:
        """Cut windows of k = num_frames frames `stride` apart from now on; the history starts again."""
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {num_frames} and {stride}")
        with self._lock:
            self.run = next(_RUNS)
            self.num_frames, self.stride = num_frames, stride
            self.size = num_frames * stride + 1
            self._frames: deque[np.ndarray] = deque(maxlen=self.size)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def push(self, pre: np.ndarray, raw: np.ndarray, index: int, ts: float, model: ServedModel, *,
             media_ts: float) -> Window | None:
        """Add one frame preprocessed for `model`, captured at wall time `ts` and content time `media_ts`; returns
        the window ending at it, for `model`, once the ring is full."""
        with self._lock:
            self._frames.append(pre)
            # (k+1, C, H, W): a copy, so later pushes do not alter it
            data = window_from_buffer(self._frames, self.num_frames, self.stride)
            run = self.run
        return None if data is None else Window(self.camera_id, index, ts, data, raw, model, media_ts, run)

    def clear(self) -> None:
        """After a reconnect the history is from another time: never predict across the gap."""
        with self._lock:
            self._frames.clear()
            self.run = next(_RUNS)
