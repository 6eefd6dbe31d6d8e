"""model.record: a live stream is kept as the service's capture keeps it (timed by presentation time, decimated by
model.clock), with a new footage segment wherever capture restarts its history."""
from __future__ import annotations

import numpy as np

from model.record import StreamRead, kept_stream_frames


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
