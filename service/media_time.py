"""A camera's content time: what its alert engine and scene-change detector measure durations in.

A live stream delivers frames in bursts (its buffer at connect, and whenever the reader is behind): frames far
apart in content arrive milliseconds apart in wall time. Durations (an alert's min_duration, hold, cooldown, the
scene's hold) are about the content, so they are measured on the camera's content timeline: each kept frame
carries beside its wall capture time (`Window.ts`: latency, snapshots, what users see) its time on that timeline
(`Window.media_ts`), and what the engines report is converted back to wall time for the users.

`MediaTimeline` (capture) stamps the frames; `MediaClock` (pipeline) converts between the two.
"""
from __future__ import annotations

from dataclasses import replace

from model import EventUpdate


class MediaTimeline:
    """One camera's content timeline across its sessions (connections, a file's pacing runs): a session's frame at
    content time t (StreamClock's, or a file's paced media time) is at session base + t.

    A session starts at its first kept frame's wall time, or one period after the timeline's latest stamp if
    that is later. So the timeline only moves forward, and an outage counts as the content time that passes: the
    wall gap, less the lead of the ending session's content over the wall clock (its burst at connect, whose
    frames are older than their arrival). Each session is anchored to the wall clock, so that lead never exceeds
    the current session's burst."""

    def __init__(self) -> None:
        self._base: float | None = None  # content time 0 of the current session on the timeline
        self.last: float | None = None  # the latest stamp

    def restart(self) -> None:
        """A session starts: its content time starts at 0, after the timeline's latest stamp."""
        self._base = None

    def stamp(self, t: float, wall: float, period: float) -> float:
        """The timeline time of a kept frame at content time `t` of the session, kept at wall time `wall`;
        `period`: the camera's frame period."""
        if self._base is None:
            first = wall if self.last is None else max(self.last + period, wall)
            self._base = first - t
        media = self._base + t  # t only increases within a session (StreamClock, a file's pacing)
        self.last = media
        return media


class MediaClock:
    """The pipeline's side of one camera: the offset between wall time and content time of the window scored last,
    to convert what the engines report (content time) to wall time and the wall times of the API's actions (a
    camera removed, its model swapped, the service stopping) to content time.

    For a real-time stream the offset is near constant (the stream's delay, less the lead of its session's
    burst), and an event's times converted with it are the wall times at which their content is live. During a
    burst the offset changes with every window; the times are converted with the offset of the window that
    reports them, so none is later than that window's wall time. An event's start (and its peak) is converted
    once: all its messages report the same one."""

    def __init__(self) -> None:
        self.offset: float | None = None  # wall - content time of the window scored last
        self.last: float | None = None  # content time of the window scored last: the engines' latest time
        self._starts: dict[str, float] = {}  # open event id -> its start in wall time
        self._peaks: dict[str, tuple[float, float]] = {}  # open event id -> its peak (content, wall) time

    def observe(self, wall: float, media: float) -> float:
        """A window about to be scored (wall and content time); returns its content time, at or after the
        engines' latest."""
        media = media if self.last is None else max(media, self.last)
        self.offset, self.last = wall - media, media
        return media

    def to_media(self, wall: float) -> float:
        """A wall time (now, for an action of the API) on the engines' timeline, at or after their latest time."""
        media = wall if self.offset is None else wall - self.offset
        return media if self.last is None else max(media, self.last)

    def to_wall(self, media: float) -> float:
        return media if self.offset is None else media + self.offset

    def event_to_wall(self, u: EventUpdate) -> EventUpdate:
        """An engine's event update with its times in wall time."""
        start = self._starts.setdefault(u.event_id, self.to_wall(u.start_ts))
        known = self._peaks.get(u.event_id)
        peak = known[1] if known is not None and known[0] == u.peak_ts else self.to_wall(u.peak_ts)
        self._peaks[u.event_id] = (u.peak_ts, peak)
        end = None if u.end_ts is None else max(self.to_wall(u.end_ts), start)
        if u.kind == "end":
            self._starts.pop(u.event_id, None)
            self._peaks.pop(u.event_id, None)
        return replace(u, start_ts=start, end_ts=end, peak_ts=peak)
