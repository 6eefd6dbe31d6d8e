"""Content time and decimation of a source's frames, shared by the service's capture and `ffp learn`.

A camera's footage must be the same frames whichever records it: the service (its capture keeps frames for
scoring and hands them to the footage recorder) or `ffp learn SOURCE` (offline). Both time a stream's frames
with `StreamClock` (its presentation time, not the arrival time), a video file's by their count at
`native_fps`, and keep them with `Decimator`; `FrameKeeper` joins the two with the rule of where the window
buffer (the frames the predictor's windows are cut from, and so a footage segment) restarts, so both apply it
alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

STREAM_FALLBACK_FPS = 25.0  # when a stream does not say (many RTSP cameras report 0 or 90000)


def stream_fps(reported: float) -> float | None:
    """The frame rate a source reports (its container's, or OpenCV's CAP_PROP_FPS), or None when it is missing
    or implausible."""
    return reported if math.isfinite(reported) and 0.5 <= reported <= 240 else None


def native_fps(reported: float | None) -> float:
    """The frame rate a source's frames are timed at: the one it reports when plausible (`stream_fps`), else
    STREAM_FALLBACK_FPS. A video file's frame i is at i / native_fps: a file camera is paced so, and `ffp learn`
    times a file so, whatever its own timestamps say (a variable frame rate, a bogus rate), so both keep the
    same frames of it."""
    plausible = stream_fps(reported) if reported is not None else None
    return plausible or STREAM_FALLBACK_FPS


def presentation_s(msec: float) -> float | None:
    """A frame's presentation time in seconds from OpenCV's CAP_PROP_POS_MSEC, None when it has none."""
    return msec / 1000.0 if math.isfinite(msec) and msec >= 0 else None


class StreamClock:
    """Content time of one live session's frames, in seconds from its first frame.

    Decimation and gap checks measure the time a frame shows: a network stream delivers frames in bursts
    (its buffer at connect, and whenever the reader is behind), so read times do not keep their content's
    spacing. The source's presentation time is used while it increases; a source without
    one, or with one that stands still (a webcam that reports 0), is timed by arrival for the rest of the
    session. `jumped` marks a frame whose presentation time is lower than the latest one, or missing in a session
    that has them: no window spans that frame.

    An RTP stream stamps its first frame N/A, which the reader gives as no time or as the second frame's time.
    Such a first frame is timed one source frame (`frame_s`) ahead of the second, so that decimation never sees
    two frames at one time.
    """

    STUCK_S = 1.0  # arrival time a source's presentation time may stand still; past it, arrival time is used
    # How fast the stream's delay may grow by itself (1 %: camera and host clocks drift apart, a reader falls
    # a little behind): content that arrives later than that is buffered content, not a live picture.
    DRIFT = 0.01

    def __init__(self, frame_s: float) -> None:
        if not frame_s > 0:
            raise ValueError(f"frame_s must be positive, got {frame_s}")
        self.frame_s = frame_s  # the source's frame period
        self.use_pts = True
        self.last = 0.0  # the latest time returned: time never goes backwards
        self.jumped = False  # set by time(): this frame starts a new timeline
        self._arrival0: float | None = None
        self._pts0 = self._last_pts = 0.0
        self._pts_seen = False
        self._frames = 0  # frames timed in this session
        self._pts_changed_at = 0.0  # arrival time the presentation time last advanced
        self._offset = 0.0  # arrival-based time starts where presentation time left off
        self._delay: float | None = None  # least (arrival - content time) seen: the stream's own delay
        self._delay_at = 0.0

    def time(self, arrival: float, pts: float | None) -> float:
        if self._arrival0 is None:
            self._arrival0 = self._pts_changed_at = arrival
        self.jumped = False
        self._frames += 1
        if self.use_pts and pts is None and self._frames == 1:  # an N/A first stamp: timed by the second frame
            return self.last
        if self.use_pts and pts is not None and pts >= 0:  # NaN fails >= as well
            if not self._pts_seen:
                first_untimed = self._frames == 2
                self._pts_seen, self._pts0, self._last_pts = True, pts - first_untimed * self.frame_s, pts
            elif self._frames == 2 and pts == self._last_pts:  # the first frame carries the second's stamp
                self._pts0, self._pts_changed_at = pts - self.frame_s, arrival
            elif pts > self._last_pts:
                self._last_pts, self._pts_changed_at = pts, arrival
            elif pts < self._last_pts - 1e-3:  # a reset stream clock: content time continues from self.last
                self._pts0, self._last_pts, self._pts_changed_at = pts - self.last, pts, arrival
                self.jumped = True
            if arrival - self._pts_changed_at <= self.STUCK_S:
                self.last = max(self.last, pts - self._pts0)
                return self.last
        if self.use_pts:  # no presentation time (or stuck): arrival time for the rest of the session
            self.use_pts = False
            self.jumped = self._pts_seen
            # arrival time continues from self.last; a session without any stamp counts from its first arrival
            self._offset = self.last - (arrival - self._arrival0) if self._pts_seen else 0.0
        self.last = max(self.last, arrival - self._arrival0 + self._offset)
        return self.last

    def fresh_at(self, arrival: float) -> float:
        """The arrival time of the frame just timed at the stream's usual delay: its arrival less the part of its
        delay above the least delay seen (allowing DRIFT). Frame age (and so stall detection) counts from here: a
        reader yields its decoder's buffered frames after the source stops sending; their content falls behind
        arrival time, so fresh_at stands still and the age grows."""
        if not self.use_pts or self._arrival0 is None:
            return arrival
        delay = arrival - self._arrival0 - self.last
        if self._delay is None or delay < self._delay + self.DRIFT * (arrival - self._delay_at):
            self._delay, self._delay_at = delay, arrival
        return arrival - (delay - self._delay) + self.DRIFT * (arrival - self._delay_at)


class Decimator:
    """Keeps frames at `fps` by content time (a file's media time, a stream's StreamClock time): a frame is kept
    when it reaches the next slot, and slots advance by whole periods, so a 25 fps source gives 10 fps on
    average. A kept frame more than half a period late for its slot (a gap, or a source timed on arrival that
    jitters) moves the next slot to half a period after it, so two kept frames are never less than half a period
    apart."""

    SLACK_S = 1e-6  # times in milliseconds or time-base units are not exact multiples of a period

    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.period = 1.0 / fps
        self.next_ts: float | None = None

    def keep(self, ts: float) -> bool:
        if self.next_ts is not None and ts + self.SLACK_S < self.next_ts:
            return False
        self.next_ts = (ts + self.period if self.next_ts is None
                        else max(self.next_ts + self.period, ts + self.period / 2))
        return True

    def max_gap(self, frame_s: float) -> float:
        """The longest time between two kept frames of an unbroken stream whose frames are `frame_s` apart: a
        period give or take one source frame, with half a period to spare. A longer one is a break (frames
        lost, a frozen camera): no window spans it."""
        return 1.5 * self.period + frame_s


@dataclass(frozen=True)
class KeptFrame:
    """A frame FrameKeeper keeps: its content time in the session, why the window buffer restarts at it (None: it
    continues the buffer), and the content time of the kept frame ahead of it in the session's unbroken timeline
    (None at the session's first kept frame and at a new timeline)."""

    t: float
    restart: str | None
    previous: float | None


class FrameKeeper:
    """Which frames of a source are kept at `fps`, and at which the window buffer restarts: the per-frame rule of
    the service's capture and of `ffp learn`, so that both keep the same frames and restart their buffers at the
    same places.

    A session (from a connect to an outage, or a file's run from its start) times its frames on a StreamClock of
    its own, or by a file's paced media time (`keep`). No window spans a break: an outage, a new timeline
    (`StreamClock.jumped`) or a gap between two kept frames longer than `Decimator.max_gap`. Decimation runs on
    across sessions (a looped file's media time runs on) and restarts after an outage."""

    OUTAGE = "outage"
    BROKEN = "the stream's timeline broke"
    GAP = "a gap in the stream"

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.decimator = Decimator(fps)
        self.clock: StreamClock | None = None  # the current session's; None outside a session (start(), outage())
        self.last_kept: float | None = None  # content time of the frame kept last in the session's timeline
        self._frame_s = 0.0  # the session's source frame period
        self._restart: str | None = None  # why the window buffer restarts at the next kept frame

    def start(self, frame_s: float) -> StreamClock:
        """A session of a source whose frames are `frame_s` apart: its content time starts at 0."""
        self.clock = StreamClock(frame_s)
        self._frame_s = frame_s
        self.last_kept = None
        return self.clock

    def outage(self) -> None:
        """The source is lost: the next session restarts decimation and the window buffer."""
        self.decimator = Decimator(self.fps)
        self.clock = None
        self.last_kept = None
        self._restart = self.OUTAGE

    def read(self, arrival: float, pts: float | None) -> KeptFrame | None:
        """A frame of a live stream read at `arrival` (monotonic s) with presentation time `pts` (s, None when it
        has none), timed by the session's clock: the frame kept, or None when it is decimated away."""
        if self.clock is None:
            raise RuntimeError("FrameKeeper.read outside a session: call start() first")
        t = self.clock.time(arrival, pts)
        if self.clock.jumped:
            self.last_kept = None
            self._restart = self._restart or self.BROKEN
        return self.keep(t)

    def keep(self, t: float) -> KeptFrame | None:
        """A frame at content time `t` of the session: the frame kept, or None when it is decimated away."""
        if self.clock is None:
            raise RuntimeError("FrameKeeper.keep outside a session: call start() first")
        if not self.decimator.keep(t):
            return None
        previous, restart = self.last_kept, self._restart
        if previous is not None and t - previous > self.decimator.max_gap(self._frame_s):
            restart = restart or self.GAP
        self.last_kept, self._restart = t, None
        return KeptFrame(t, restart, previous)
