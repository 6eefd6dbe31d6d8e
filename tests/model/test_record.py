"""model.record: a source is kept as the service's capture keeps it (a live stream timed by presentation time, a
video file by frame count at its native rate, decimated by model.clock), with a new footage segment wherever
capture restarts its history."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model.config import get_preset
from model.footage import Footage
from model.record import StreamRead, kept_stream_frames, record

GREY_STEP = 8  # grey level step between the frames of grey_clip


def reads(pts: list[float | None], arrivals: list[float], frame_s: float = 0.04) -> list[StreamRead | None]:
    return [StreamRead(np.full((2, 2), i, np.uint8), a, p, frame_s)
            for i, (p, a) in enumerate(zip(pts, arrivals, strict=True))]


def test_a_connect_burst_is_decimated_on_presentation_time_not_arrival() -> None:
    """An RTSP connect hands over a second of buffered frames at once: all 25 carry their own time, so 10 of them
    are kept at 10 fps, not the first alone."""
    burst = reads([i * 0.04 for i in range(25)], [100.0] * 25)
    kept = list(kept_stream_frames(burst, fps=10))
    assert [int(f[0, 0]) for f, _, _ in kept] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23]
    assert [t for _, t, _ in kept] == [i * 0.04 for i in (0, 3, 5, 8, 10, 13, 15, 18, 20, 23)]
    assert all(reason is None for _, _, reason in kept)


def test_an_outage_a_broken_timeline_and_a_gap_start_new_segments() -> None:
    first = reads([0.0, 0.1, 0.2], [10.0, 10.1, 10.2], frame_s=0.1)
    second = reads([7.0, 7.1, 3.0, 3.1, 4.0], [20.0, 20.1, 20.2, 20.3, 21.2], frame_s=0.1)
    kept = list(kept_stream_frames([*first, None, *second], fps=10))
    # 3.0 restarts the stream's clock: its time carries on from 7.1's, too soon to be kept; the next one starts
    # the segment after the break
    assert [int(f[0, 0]) for f, _, _ in kept] == [0, 1, 2, 0, 1, 3, 4]
    assert [reason for _, _, reason in kept] == [None, None, None, "outage", None, "the stream's timeline broke",
                                                 "a gap in the stream"]
    times = [t for _, t, _ in kept]
    assert times[:3] == [0.0, 0.1, 0.2] and times[3] == 10.0  # the second session starts 10 s after the first
    assert np.all(np.diff(times) > 0)


def grey_clip(path: Path, fps: float, n: int) -> Path:
    """An MJPG .avi of n frames reporting `fps`, frame i all grey level GREY_STEP * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((24, 32, 3), GREY_STEP * i, np.uint8))
    writer.release()
    return path


def recorded_indices(source: Path, footage: Path, fps: float) -> list[int]:
    record(str(source), footage, get_preset("lite", num_frames=4, image_size=(32, 32)), fps=fps,
           footage_minutes=1.0, max_bytes=10**8)
    return [round(float(f.mean()) / GREY_STEP) for segment in Footage(footage).segments() for f in segment]


@pytest.mark.parametrize(("reported", "kept"), [
    (50.0, [0, 5, 10, 15, 20, 25]),  # its own rate: every 5th frame at 10 fps
    # A rate no camera has (its timestamps 1 ms apart): timed at STREAM_FALLBACK_FPS (25), as capture paces it,
    # not by its timestamps (which would keep its first frame alone)
    (1000.0, [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]),
])
def test_a_video_file_is_timed_by_frame_count_at_its_native_rate(tmp_path: Path, reported: float,
                                                                 kept: list[int]) -> None:
    clip = grey_clip(tmp_path / "clip.avi", reported, 30)
    assert recorded_indices(clip, tmp_path / "footage", fps=10) == kept


def test_a_stream_that_never_opens_is_an_error_not_empty_footage(tmp_path: Path) -> None:
    """`ffp learn URL` on a camera that refuses the connection says so, without the URL's credentials, and
    records nothing."""
    import socket

    from model.data import DataError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot open stream") as err:
        record(f"rtsp://admin:hunter2@127.0.0.1:{port}/cam", tmp_path / "footage", get_preset("lite", num_frames=4),
               fps=10, footage_minutes=0.1, max_bytes=10**8)
    assert str(err.value).endswith(f": rtsp://***@127.0.0.1:{port}/cam"), err.value  # no credentials
    footage = tmp_path / "footage"
    assert not footage.exists() or not list(Footage(footage).segments())
