"""Record a source into a footage folder (model.footage) for `ffp learn`: a live stream (URL), a video file or
a folder of videos (each file a segment).

`record(source, footage_root, ...)` keeps the frames the service's capture keeps of the same source: a stream
goes through capture's FrameKeeper (model.clock: timed by its presentation time and decimated to the camera's
fps), and a segment ends wherever capture restarts its window buffer.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .clock import Decimator, FrameKeeper, native_fps
from .config import ModelConfig
from .data import DataError, VideoSource, find_videos
from .footage import FootageWriter, footage_frames
from .redact import redact_url
from .stream import LiveStream, StreamError


def is_url(source: str) -> bool:
    return "://" in source


def _timed_frames(source: VideoSource, fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """(frame, media time in s) of a video file, frame i at i / its native_fps (model.clock), as the service's
    capture times a file camera; a folder of frames is taken as shot at `fps`."""
    import cv2

    from .data import iter_frames

    if source.is_frames:
        for i, frame in enumerate(iter_frames(source)):
            yield frame, i / fps
        return
    cap = cv2.VideoCapture(str(source.path))
    if not cap.isOpened():
        raise DataError(f"cannot open video {source.path}")
    file_fps = native_fps(float(cap.get(cv2.CAP_PROP_FPS) or 0.0))
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame, i / file_fps
            i += 1
    finally:
        cap.release()


@dataclass(frozen=True)
class StreamRead:
    """One frame read from a live stream: its arrival (monotonic s), its presentation time (s, None when it has
    none) and the stream's frame period."""

    frame: np.ndarray
    arrival: float
    pts: float | None
    frame_s: float


def _stream_reads(url: str, seconds: float, retries: int = 3, timeout_s: float = 10.0
                  ) -> Iterator[StreamRead | None]:
    """The frames of a live stream for `seconds`, read as the service's capture reads them (model.stream); None
    marks an outage, after which it reconnects (at most `retries` times). A stream that never opens is an error."""
    start = time.monotonic()
    opened = False
    for attempt in range(retries + 1):
        if time.monotonic() - start >= seconds:
            return
        if attempt:
            yield None
            time.sleep(1.0)
        try:
            stream = LiveStream(url, open_timeout_s=timeout_s, read_timeout_s=timeout_s)
        except StreamError as e:
            if not opened:
                raise DataError(f"{e}: {redact_url(url)}") from None
            continue
        opened = True
        frame_s = 1.0 / native_fps(stream.fps)
        try:
            while time.monotonic() - start < seconds:
                frame = stream.read()
                yield StreamRead(frame, time.monotonic(), stream.pts_s, frame_s)
        except StreamError:
            pass
        finally:
            stream.close()


def kept_stream_frames(reads: Iterable[StreamRead | None],
                       fps: float) -> Iterator[tuple[np.ndarray, float, str | None]]:
    """The frames of a live stream that the service's capture keeps at `fps`, by the same FrameKeeper: each session
    (from a connect to an outage, None) timed by its presentation time and decimated on it, as (frame, time in s
    from the first session's start, why a footage segment starts at it or None). A segment ends where the
    capture restarts its window buffer: an outage, a new timeline, a gap."""
    keeper = FrameKeeper(fps)
    start: float | None = None
    offset = 0.0  # the current session's first frame, in seconds from the first session's first frame
    for read in reads:
        if read is None:
            keeper.outage()
            continue
        if keeper.clock is None:
            keeper.start(read.frame_s)
            start = read.arrival if start is None else start
            offset = read.arrival - start
        kept = keeper.read(read.arrival, read.pts)
        if kept is not None:
            yield read.frame, offset + kept.t, kept.restart


def record(source: str, footage_root: Path, config: ModelConfig, *, fps: float, footage_minutes: float,
           max_bytes: int) -> FootageWriter:
    """Record SOURCE (URL, video file, folder of videos or of frame folders) into footage_root, decimated to
    `fps`, until footage_minutes of frames are kept; returns the closed writer (frames, static_reason)."""
    if footage_minutes <= 0 or fps <= 0:
        raise DataError("--footage-minutes and --fps must be positive")
    max_frames = footage_frames(footage_minutes, fps)
    writer = FootageWriter(footage_root, config, fps=fps, max_frames=max_frames, max_bytes=max_bytes)
    try:
        if is_url(source):
            for frame, ts, reason in kept_stream_frames(_stream_reads(source, footage_minutes * 60 * 1.5 + 30), fps):
                if reason is not None:
                    writer.new_segment(reason)
                if not writer.append(frame, ts):
                    break
        else:
            path = Path(source)
            if not path.exists():
                raise DataError(f"source not found: {source} (give a URL, a video file or a folder of videos)")
            for video in find_videos(path):
                decimator = Decimator(fps)
                full = False
                for frame, ts in _timed_frames(video, fps):
                    if decimator.keep(ts) and not writer.append(frame, ts):
                        full = True
                        break
                writer.new_segment(f"next file after {video.name}")
                if full:
                    break
    finally:
        writer.close()
    return writer
