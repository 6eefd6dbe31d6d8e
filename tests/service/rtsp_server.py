"""A real RTSP camera for the service tests: GStreamer's RTSP server with a live test pattern.

Run with Debian's /usr/bin/python3 (the `gi` bindings are not importable from the venv):

    /usr/bin/python3 tests/service/rtsp_server.py --port 0

It binds 127.0.0.1 only and prints `PORT <n>` on stdout once it listens. Control lines on stdin switch the
live picture of every connected client at once, which injects a deterministic visual anomaly:

    snow       -> the test pattern becomes white noise
    pinwheel   -> back to the normal picture (any name in PATTERNS works)

Every client gets its own pipeline from the pattern's first frame: a media shared between clients aborts
gst-rtsp-server 1.22 when clients connect and leave at once (`gst_rtsp_media_get_rates: assertion failed`).

Killing the process drops every client (a camera outage); start it again with `--port <n>` to come back.

`--files DIR` also serves every DIR/NAME.mp4 (H.264) at /NAME, paced in real time; each client gets its own
playback from the file's first frame, and the stream ends with the file.
"""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 (after require_version)

# GstVideoTestSrcPattern values. The tests' normal picture is the pinwheel (turns a little per frame); the
# injected anomaly is snow (every pixel changes). The ball is a poor "normal": it jumps far between frames.
PATTERNS = {"smpte": 0, "snow": 1, "black": 2, "white": 3, "ball": 18, "pinwheel": 21, "gradient": 23,
            "colors": 24}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--pattern", default="pinwheel", choices=sorted(PATTERNS))
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--files", type=Path, help="also serve DIR/NAME.mp4 at /NAME")
    args = ap.parse_args()

    Gst.init(None)
    state = {"pattern": PATTERNS[args.pattern]}
    sources: list[Gst.Element] = []

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc name=src is-live=true pattern={state['pattern']} "
        f"! video/x-raw,width=320,height=240,framerate={args.fps}/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(False)

    def on_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        src = media.get_element().get_by_name("src")
        src.set_property("pattern", state["pattern"])
        sources.append(src)
        media.connect("unprepared", lambda _media: GLib.idle_add(forget, src))

    def forget(src: Gst.Element) -> bool:  # on the main loop, where `apply` walks the list
        if src in sources:
            sources.remove(src)
        return False

    factory.connect("media-configure", on_configure)
    server.get_mount_points().add_factory(args.path, factory)
    for video in sorted(args.files.glob("*.mp4")) if args.files else []:
        # Not shared: a client that connects plays the file from its start (a recorded camera, replayed).
        played = GstRtspServer.RTSPMediaFactory()
        played.set_launch(f'( filesrc location="{video}" ! qtdemux ! h264parse '
                          "! rtph264pay name=pay0 pt=96 config-interval=1 )")
        server.get_mount_points().add_factory(f"/{video.stem}", played)
    if server.attach(None) == 0:
        print("ERROR cannot bind", flush=True)
        sys.exit(1)
    print(f"PORT {server.get_bound_port()}", flush=True)

    def apply(pattern: int) -> bool:
        state["pattern"] = pattern
        for src in sources:
            src.set_property("pattern", pattern)  # videotestsrc switches live, mid-stream
        print(f"PATTERN {pattern}", flush=True)
        return False

    def read_stdin() -> None:
        for line in sys.stdin:
            word = line.strip()
            if word in PATTERNS:
                GLib.idle_add(apply, PATTERNS[word])
        # stdin closed: the test process is gone, so are we.
        GLib.idle_add(loop.quit)

    loop = GLib.MainLoop()
    threading.Thread(target=read_stdin, daemon=True).start()
    loop.run()


if __name__ == "__main__":
    main()
