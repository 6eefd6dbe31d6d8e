"""A live network stream (RTSP, HTTP, ...) decoded by FFmpeg through PyAV: BGR frames and their presentation times.

Not OpenCV: its FFmpeg backend opens every source under one process-wide lock, so an unreachable or frozen camera
would hold up every other camera's connect and every uploaded clip's open for its whole open timeout. PyAV opens
each container on its own and releases the GIL while it waits.

Presentation times are the frames' own (pts x time base, in seconds), in presentation order; a frame without one
(FFmpeg's RTP demuxer stamps a session's first frame N/A) has `pts_s` None. model.clock.StreamClock reads them.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .clock import stream_fps

# Consecutive packets a decoder may refuse (a corrupted or lost packet) before the stream counts as broken.
MAX_BAD_PACKETS = 25


class StreamError(RuntimeError):
    """The stream could not be opened, stopped sending (read timeout), ended or could not be decoded."""


# What an HTTP stream may be when playlists are refused: a video stream or file, not a playlist (HLS, DASH), whose
# segment URLs FFmpeg would fetch from whatever hosts it names.
NO_PLAYLIST_FORMATS = "mjpeg,mpjpeg,mov,mp4,matroska,webm,mpegts,flv,avi,h264,hevc,asf"


def _options(url: str, playlists: bool) -> dict[str, str]:
    if _is_http(url):
        # The host connected to is the host the URL names (the service checks it against its host policy):
        # a redirect could lead anywhere, a cloud metadata service included.
        return {"max_redirects": "0"} | ({} if playlists else {"format_whitelist": NO_PLAYLIST_FORMATS})
    # RTSP over TCP: UDP loses packets under load and smears frames.
    return {"rtsp_transport": "tcp"} if url.lower().startswith(("rtsp://", "rtsps://")) else {}


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


class LiveStream:
    """One connection to a live stream. `read()` blocks for the next frame, at most `read_timeout_s` without
    data; any failure raises StreamError and the stream is then done (reconnect by opening a new one)."""

    def __init__(self, url: str, *, open_timeout_s: float, read_timeout_s: float, playlists: bool = True) -> None:
        """`playlists`: an HTTP stream may be a playlist (HLS, DASH) whose segments come from other hosts."""
        import av

        self._av = av
        self._read_timeout_s = read_timeout_s
        t0 = time.monotonic()
        try:
            self._container: Any = av.open(url, options=_options(url, playlists),
                                           timeout=(open_timeout_s, read_timeout_s))
        except Exception as e:  # noqa: BLE001 - PyAV raises FFmpeg's errors and OSError alike
            hint = "" if not _is_http(url) else (
                " (HTTP redirects are not followed: give the URL the camera redirects to"
                + ("" if playlists else "; a video stream or file, not a playlist") + ")")
            reason = _reason(e, time.monotonic() - t0, open_timeout_s)
            raise StreamError(f"cannot open stream: {reason}{hint}") from None
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self._container.close()
            raise StreamError("the stream has no video") from None
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: float | None = stream_fps(float(rate)) if rate else None
        self.codec: str | None = self._stream.codec_context.name  # FFmpeg's name: h264, hevc, mjpeg ...
        self.pts_s: float | None = None  # presentation time of the frame read last
        self._packets = self._container.demux(self._stream)
        self._pending: list[Any] = []  # frames decoded but not handed out yet (a packet may give several)

    def read(self) -> np.ndarray:
        """The next frame as a BGR array (a fresh one per call)."""
        bad = 0
        while not self._pending:
            t0 = time.monotonic()
            try:
                packet = next(self._packets)
            except StopIteration:
                raise StreamError("the stream ended") from None
            except Exception as e:  # noqa: BLE001 - a read timeout, a dropped connection
                reason = _reason(e, time.monotonic() - t0, self._read_timeout_s)
                raise StreamError(f"stream read failed: {reason}") from None
            try:
                self._pending = list(packet.decode())
                bad = 0
            except self._av.error.InvalidDataError as e:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise StreamError(f"undecodable stream: {_reason(e, 0.0, math.inf)}") from None
        frame = self._pending.pop(0)
        self.pts_s = float(frame.time) if frame.time is not None else None
        return np.asarray(frame.to_ndarray(format="bgr24"))

    def close(self) -> None:
        self._container.close()


def _reason(e: Exception, waited_s: float, timeout_s: float) -> str:
    """Why a call failed: a timeout when it lasted its timeout (FFmpeg then reports whatever the interrupted
    call saw, often "Invalid data found"), else FFmpeg's words, without the URL PyAV appends (it may carry
    credentials)."""
    if waited_s >= 0.95 * timeout_s:
        return f"no answer within {timeout_s:g} s"
    strerror = getattr(e, "strerror", None)
    return str(strerror) if strerror else type(e).__name__
