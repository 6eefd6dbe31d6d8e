"""A camera's recorded normal footage: frames stored preprocessed, in segments, for training its own model.

Layout of a footage folder ROOT (the service keeps one per camera):
    ROOT/seg-00001/chunk-00000.npy   uint8 frames at the model's input size: (n, h, w) grey or (n, h, w, 3) RGB,
    ROOT/seg-00001/chunk-00001.npy   exactly `resize_frame`'s output, so training sees the scorer's inputs
    ROOT/seg-00001/meta.json         {"fps", "frames", "first_ts", "last_ts", "closed", "reason"}
A segment is a stretch of continuous video; an outage or a history reset starts the next one, and no training
window spans two. Chunks and meta files are written to a temp file and renamed: a crash loses at most the
frames not yet written (one chunk), never corrupts what is on disk. The reader trusts the chunk files.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ModelConfig
from .data import DataError, resize_frame

SEGMENT_PREFIX = "seg-"
CHUNK_PREFIX = "chunk-"
NPY_HEADER_BYTES = 128  # numpy's .npy header of a plain array (format 1.0): counted against the disk cap

# The static-stream check (motion_check). A pixel "moves" between two frames when its grey level changes by at
# least MOVING_LEVEL (well above sensor and codec noise once frames are averaged down to the model's size); a
# frame pair moves when at least MOVING_PIXELS of its pixels do (8 pixels of a 128x128 frame: an object of a
# few pixels is enough). A stream is frozen when fewer than MIN_MOVING_PAIRS of its consecutive frame pairs
# move, and uniform (black, covered, blank) when the median frame's pixel standard deviation is under
# MIN_SPREAD grey levels.
MOVING_LEVEL = 10
MOVING_PIXELS = 0.0005
MIN_MOVING_PAIRS = 0.001
MIN_SPREAD = 2.0
MIN_HOLDOUT_WINDOWS = 32  # held-out windows footage keeps at least, whatever the holdout fraction gives


def _atomic_write(path: Path, write: Any, mode: int | None = None) -> None:
    """Call write(file) on a temp file beside `path` (its folder made if missing), then rename it to `path`. The
    file keeps the temp file's 0600 unless `mode` is given (state that may hold camera URLs stays private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any], *, mode: int | None = None) -> None:
    _atomic_write(path, lambda f: f.write(json.dumps(data, indent=1).encode()), mode)


# ---- the static-stream check -------------------------------------------------------------------------------

@dataclass
class MotionStats:
    """Running statistics of a stream for `motion_check`: frame pairs, moving pairs, per-frame pixel spread."""

    pairs: int = 0
    moving_pairs: int = 0
    spreads: list[float] | None = None

    def add(self, frame: np.ndarray, previous: np.ndarray | None) -> None:
        """One stored frame; `previous` is the frame before it in the same segment (None at a segment start)."""
        if self.spreads is None:
            self.spreads = []
        self.spreads.append(float(frame.std()))
        if previous is not None:
            self.pairs += 1
            changed = np.count_nonzero(np.abs(frame.astype(np.int16) - previous.astype(np.int16)) >= MOVING_LEVEL)
            if changed >= MOVING_PIXELS * frame.size:
                self.moving_pairs += 1

    def add_segments(self, segments: list[np.ndarray]) -> None:
        """Every frame of the segments (uint8 frames per segment, as stored); no pair spans two segments."""
        for seg in segments:
            for i, frame in enumerate(seg):
                self.add(frame, seg[i - 1] if i else None)

    def reason(self) -> str | None:
        """Why this stream cannot be learned (a frozen or uniform picture), or None. None also while fewer than
        two frames are known: nothing to judge yet."""
        if not self.spreads or self.pairs == 0:
            return None
        spread = float(np.median(self.spreads))
        if spread < MIN_SPREAD:
            return (f"the picture is uniform (black, covered or blank): its pixels spread over {spread:.1f} grey "
                    f"levels (standard deviation), under {MIN_SPREAD:g}")
        need = max(1, math.ceil(MIN_MOVING_PAIRS * self.pairs))
        if self.moving_pairs < need:
            return (f"the stream is frozen: {self.moving_pairs} of {self.pairs} frame pairs show any motion "
                    f"(need at least {need}); a still picture has no normal motion to learn")
        return None


def motion_check(segments: list[np.ndarray]) -> str | None:
    """Why footage (uint8 frames per segment, as stored) cannot be learned, or None when it moves."""
    stats = MotionStats()
    stats.add_segments(segments)
    return stats.reason()


# ---- reading ------------------------------------------------------------------------------------------------

def _segment_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(SEGMENT_PREFIX))


def _chunk_files(segment: Path) -> list[Path]:
    return sorted(p for p in segment.iterdir() if p.name.startswith(CHUNK_PREFIX) and p.suffix == ".npy")


def _read_meta(segment: Path) -> dict[str, Any]:
    path = segment / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class Piece:
    """A stretch of one segment's frames (a whole segment, or the part before or after the holdout cut)."""

    name: str  # "seg-00002" or "seg-00002[340:]"
    segment: Path
    frames: np.ndarray  # uint8 (n, h, w) or (n, h, w, 3)


class Footage:
    """Reader of a footage folder: its segments' frames, counts and span, and the train / holdout split."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def segment_dirs(self) -> list[Path]:
        """Segments holding at least one chunk, oldest first."""
        return [d for d in _segment_dirs(self.root) if _chunk_files(d)]

    def pieces(self) -> list[Piece]:
        """Every non-empty segment with its uint8 frames, oldest first (read from disk once per call)."""
        return [Piece(d.name, d, self._load(d)) for d in self.segment_dirs()]

    def segments(self) -> list[np.ndarray]:
        """uint8 frames of every non-empty segment, oldest first."""
        return [p.frames for p in self.pieces()]

    @staticmethod
    def _load(segment: Path) -> np.ndarray:
        return np.concatenate([np.load(c) for c in _chunk_files(segment)])

    @property
    def frames(self) -> int:
        return sum(_chunk_frames(c) for d in self.segment_dirs() for c in _chunk_files(d))

    @property
    def bytes(self) -> int:
        return sum(c.stat().st_size for d in _segment_dirs(self.root) for c in _chunk_files(d))

    @property
    def span_s(self) -> float:
        """Seconds of video recorded: the sum of the segments' spans (gaps between segments not counted)."""
        total = 0.0
        for d in self.segment_dirs():
            meta = _read_meta(d)
            if meta.get("first_ts") is not None and meta.get("last_ts") is not None:
                total += float(meta["last_ts"]) - float(meta["first_ts"])
        return total

    @property
    def fps(self) -> float | None:
        metas = [_read_meta(d) for d in self.segment_dirs()]
        return next((float(m["fps"]) for m in metas if m.get("fps")), None)

    def split(self, holdout_fraction: float, history: int, min_holdout_windows: int,
              pieces: list[Piece] | None = None) -> tuple[list[Piece], list[Piece]]:
        """(train, holdout): the holdout is the TAIL of the footage, `holdout_fraction` of its frames and at least
        `min_holdout_windows` windows of `history` + 1 frames (enough to validate and calibrate on); a segment
        the cut falls into is split in two pieces. Windows are cut within a piece, never across two. `pieces`:
        the footage already read (`pieces()`), so that a caller that checked it does not read it again."""
        if not 0.0 < holdout_fraction < 1.0:
            raise DataError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
        pieces = self.pieces() if pieces is None else pieces
        total = sum(len(p.frames) for p in pieces)
        if total == 0:
            raise DataError(f"no footage recorded in {self.root}")
        held = math.ceil(holdout_fraction * total)
        while True:
            train, holdout = _cut(pieces, total - held)
            holdout_windows = sum(max(0, len(p.frames) - history) for p in holdout)
            train_windows = sum(max(0, len(p.frames) - history) for p in train)
            if holdout_windows >= min_holdout_windows and train_windows > 0:
                return [p for p in train if len(p.frames) > history], [p for p in holdout if len(p.frames) > history]
            if holdout_windows >= min_holdout_windows or held >= total:
                raise DataError(f"footage too short to learn from: {total} frames in {len(pieces)} segments; a "
                                f"training part and {min_holdout_windows} held-out windows of {history + 1} "
                                "frames are needed")
            held = min(total, held + (min_holdout_windows - holdout_windows))


def footage_frames(minutes: float, fps: float) -> int:
    """Frames in `minutes` of footage kept at `fps` (at least one): what a recording of that length holds."""
    return max(1, round(minutes * 60 * fps))


def min_footage_frames(history: int, min_holdout_windows: int = MIN_HOLDOUT_WINDOWS) -> int:
    """The fewest frames footage can be learnt from, in one unbroken segment (`Footage.split`): the held-out
    windows and one training window, each of `history` + 1 frames."""
    return min_holdout_windows + 2 * history + 1


def _cut(pieces: list[Piece], at: int) -> tuple[list[Piece], list[Piece]]:
    """Split the pieces (in order) at global frame `at`: frames before it train, frames from it are held out."""
    train: list[Piece] = []
    holdout: list[Piece] = []
    start = 0
    for p in pieces:
        n = len(p.frames)
        if start + n <= at:
            train.append(p)
        elif start >= at:
            holdout.append(p)
        else:
            i = at - start
            train.append(Piece(f"{p.name}[:{i}]", p.segment, p.frames[:i]))
            holdout.append(Piece(f"{p.name}[{i}:]", p.segment, p.frames[i:]))
        start += n
    return train, holdout


def _chunk_frames(path: Path) -> int:
    return int(np.load(path, mmap_mode="r").shape[0])


def as_model_layout(frames: np.ndarray) -> np.ndarray:
    """Stored uint8 frames (n, h, w) or (n, h, w, 3) -> (n, C, h, w) uint8, the layout of the model's windows."""
    return frames[:, None] if frames.ndim == 3 else frames.transpose(0, 3, 1, 2)


# ---- writing ------------------------------------------------------------------------------------------------

class FootageWriter:
    """Records a camera's frames into ROOT, preprocessed, until `max_frames` or `max_bytes` is reached.

    `append` returns False once full (and says why in `full_reason`): recording stops, what is on disk stays
    whole. Reopening a ROOT continues it in a new segment (the time between is a gap). `static_reason` says,
    over everything recorded, whether the stream is frozen or uniform (see motion_check).

    `rolling`: a window of the most recent footage instead: at a cap, the oldest chunk on disk is deleted to
    make room (an emptied segment with it), and recording goes on; `dropped` counts the frames deleted. The frame
    cap of a rolling window is max_frames plus one chunk, so that once full it always holds at least max_frames
    (whoever takes the window between two frames gets all of it); the byte cap stays a hard cap."""

    def __init__(self, root: str | Path, config: ModelConfig, *, fps: float, max_frames: int, max_bytes: int,
                 chunk_frames: int = 50, rolling: bool = False) -> None:
        if max_frames < 1 or max_bytes < 1 or chunk_frames < 1:
            raise ValueError("max_frames, max_bytes and chunk_frames must be positive")
        self.root = Path(root)
        self.rolling, self.dropped = rolling, 0
        self.config = config
        self.fps = float(fps)
        self.max_frames, self.max_bytes, self.chunk_frames = max_frames, max_bytes, chunk_frames
        self._frame_cap = max_frames + chunk_frames if rolling else max_frames
        self.full_reason: str | None = None
        existing = Footage(self.root)
        self._stored_frames = existing.frames
        self._stored_bytes = existing.bytes
        self._stats = MotionStats()
        self._stats.add_segments(existing.segments())  # the check covers all the footage, not only this process's
        self._next_segment = max((int(d.name[len(SEGMENT_PREFIX):]) for d in _segment_dirs(self.root)
                                  if d.name[len(SEGMENT_PREFIX):].isdigit()), default=0) + 1
        self._segment: Path | None = None
        self._segment_meta: dict[str, Any] = {}
        self._segment_reason = "reopened" if self._stored_frames else "start"
        self._chunks = 0
        self._buffer: list[np.ndarray] = []
        self._previous: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return self._stored_frames + len(self._buffer)

    @property
    def bytes(self) -> int:
        """Bytes of frames on disk, and of those waiting to be written (with their chunk's header)."""
        return self._stored_bytes + self._pending_bytes(len(self._buffer))

    def _pending_bytes(self, n: int) -> int:
        return n * self._frame_nbytes + NPY_HEADER_BYTES if n else 0

    @property
    def _frame_nbytes(self) -> int:
        h, w = self.config.image_size
        return h * w * self.config.channels

    @property
    def static_reason(self) -> str | None:
        return self._stats.reason()

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """A decoded frame (uint8 BGR or grey, any size) as it is stored: the model's input image."""
        return resize_frame(frame, self.config)

    def append(self, frame: np.ndarray, ts: float) -> bool:
        """Record one decoded frame (uint8 BGR or grey, any size) taken at `ts` seconds; False when full."""
        return self.append_prepared(self.prepare(frame), ts)

    def _at_cap(self) -> bool:
        return (self.frames >= self._frame_cap
                or self._stored_bytes + self._pending_bytes(len(self._buffer) + 1) > self.max_bytes)

    def _drop_oldest_chunk(self) -> bool:
        """Rolling: delete the oldest chunk on disk (and its segment once empty); False when none is left."""
        for seg in _segment_dirs(self.root):
            chunks = _chunk_files(seg)
            if not chunks:
                if seg != self._segment:
                    shutil.rmtree(seg, ignore_errors=True)
                continue
            n, size = _chunk_frames(chunks[0]), chunks[0].stat().st_size
            chunks[0].unlink()
            self._stored_frames, self._stored_bytes, self.dropped = (self._stored_frames - n,
                                                                     self._stored_bytes - size, self.dropped + n)
            if seg == self._segment:
                meta = self._segment_meta
            elif len(chunks) == 1:
                shutil.rmtree(seg, ignore_errors=True)
                return True
            else:
                meta = _read_meta(seg)
            # its first n frames are gone: it starts n frames later (its first_ts: as if evenly spaced)
            meta.update(frames=max(0, int(meta.get("frames", n)) - n),
                        first_ts=float(meta.get("first_ts") or 0.0) + n / max(self.fps, 1e-9))
            write_json_atomic(seg / "meta.json", meta)
            return True
        return False

    def append_prepared(self, img: np.ndarray, ts: float) -> bool:
        """Record one frame already prepared (`prepare`) taken at `ts` seconds; False when full."""
        if self.rolling and self.full_reason is None:
            while self._at_cap():
                if self._drop_oldest_chunk():
                    continue
                if not self._buffer:
                    break
                self.flush()  # at the byte cap with nothing on disk: what waits goes there to be dropped
        if self.full_reason is None:
            if self.frames >= self._frame_cap:
                self.full_reason = f"frame cap reached: {self.frames} frames recorded (max_frames {self.max_frames})"
            elif self._stored_bytes + self._pending_bytes(len(self._buffer) + 1) > self.max_bytes:
                self.full_reason = f"disk cap reached: {self.bytes} bytes of footage (max_bytes {self.max_bytes})"
        if self.full_reason is not None:
            self.flush()
            return False
        if self._segment is None:
            self._open_segment(ts)
        self._stats.add(img, self._previous)
        self._previous = img
        self._buffer.append(img)
        self._segment_meta["last_ts"] = float(ts)
        if len(self._buffer) >= self.chunk_frames:
            self.flush()
        return True

    def _open_segment(self, ts: float) -> None:
        self._segment = self.root / f"{SEGMENT_PREFIX}{self._next_segment:05d}"
        self._next_segment += 1
        self._segment.mkdir(parents=True, exist_ok=False)
        self._segment_meta = {"fps": self.fps, "frames": 0, "first_ts": float(ts), "last_ts": float(ts),
                              "closed": False, "reason": self._segment_reason}
        self._chunks = 0
        self._previous = None

    def flush(self) -> None:
        """Write the frames waiting in memory as one chunk (atomically), then the segment's meta."""
        if not self._buffer or self._segment is None:
            return
        chunk = np.stack(self._buffer)
        path = self._segment / f"{CHUNK_PREFIX}{self._chunks:05d}.npy"
        _atomic_write(path, lambda f: np.save(f, chunk))
        self._chunks += 1
        self._stored_frames += len(chunk)
        self._stored_bytes += path.stat().st_size
        self._buffer = []
        self._segment_meta["frames"] += len(chunk)
        write_json_atomic(self._segment / "meta.json", self._segment_meta)

    def new_segment(self, reason: str) -> None:
        """End the current segment (an outage, a history reset): the next frame starts a new one, and no training
        window will span the two."""
        self._close_segment()
        self._segment_reason = reason

    def _close_segment(self) -> None:
        self.flush()
        if self._segment is not None and self._segment_meta.get("frames"):
            self._segment_meta["closed"] = True
            write_json_atomic(self._segment / "meta.json", self._segment_meta)
        elif self._segment is not None:  # opened, but nothing was ever written to it
            self._segment.rmdir()
        self._segment = None
        self._previous = None

    def close(self) -> None:
        self._close_segment()

