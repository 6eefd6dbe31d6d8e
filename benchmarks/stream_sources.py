"""Network camera readers: model.stream.LiveStream (PyAV, what the service uses) against OpenCV's FFmpeg backend.

    python benchmarks/stream_sources.py [--frames 300]

1. Decoding cost: ../shared/fixtures/vtest.avi (768x576, 10 fps) encoded as H.264 and served in real time by the
   GStreamer RTSP server of the tests; each reader reads --frames frames; this process's CPU seconds per frame.
   Then the same footage as a typical camera's main stream (1920x1080 at 25 fps, upscaled) with the service's
   reader: what one such camera costs to decode, all frames being decoded whatever the camera's scoring fps.
2. A camera hanging in its connect (a TCP server that accepts and never answers) while, from another thread, a
   video file is opened and read (a file camera, an uploaded clip) and another RTSP camera connects and delivers
   its first frame: how long each waited, with the hung camera's open timeout at 10 s.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from learn_camera import rtsp_files  # noqa: E402 (this folder is on sys.path)

from model import LiveStream  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VTEST = ROOT.parent / "shared" / "fixtures" / "vtest.avi"
DEMO = ROOT / "service" / "demo" / "ped2_demo.mp4"
OPEN_TIMEOUT_S = 10.0


def opencv_reader(url: str) -> Callable[[], np.ndarray]:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(OPEN_TIMEOUT_S * 1000),
                                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000])
    if not cap.isOpened():
        raise RuntimeError("OpenCV cannot open the stream")

    def read() -> np.ndarray:
        ok, frame = cap.read()
        if not ok:
            raise RuntimeError("OpenCV read failed")
        return frame
    return read


def pyav_reader(url: str) -> Callable[[], np.ndarray]:
    return LiveStream(url, open_timeout_s=OPEN_TIMEOUT_S, read_timeout_s=5.0).read


READERS = {"pyav": pyav_reader, "opencv": opencv_reader}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode_cost(url: str, frames: int, readers: dict[str, Callable[[str], Callable[[], np.ndarray]]]) -> None:
    for name, reader in readers.items():
        read = reader(url)
        read()
        c0, t0 = cpu_s(), time.monotonic()
        for _ in range(frames):
            read()
        cpu, wall = cpu_s() - c0, time.monotonic() - t0
        shape = "x".join(str(v) for v in read().shape[1::-1])
        print(f"decode  {name:6s} {shape} {frames} frames in {wall:5.1f} s: {1000 * cpu / frames:5.2f} ms CPU per "
              f"frame ({cpu / wall:.2f} cores)", flush=True)


def hung_camera(url: str) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    threading.Thread(target=lambda: conns.append(srv.accept()[0]), daemon=True).start()
    hung_url = f"rtsp://127.0.0.1:{srv.getsockname()[1]}/hung"
    for name, reader in READERS.items():
        def hang(reader: Callable[[str], object] = reader) -> None:
            with contextlib.suppress(Exception):  # the open is expected to time out
                reader(hung_url)
        hung = threading.Thread(target=hang)
        t_hang = time.monotonic()
        hung.start()
        time.sleep(0.5)  # the hung camera is inside its open
        t0 = time.monotonic()
        cap = cv2.VideoCapture(str(DEMO), cv2.CAP_FFMPEG)
        ok = cap.read()[0]
        cap.release()
        t_file = time.monotonic() - t0
        t0 = time.monotonic()
        reader(url)()
        t_rtsp = time.monotonic() - t0
        hung.join()
        print(f"hung    {name:6s} hung camera's open returned after {time.monotonic() - t_hang:4.1f} s; meanwhile "
              f"a file opened and read in {t_file:5.2f} s (ok={ok}), another RTSP camera's first frame in "
              f"{t_rtsp:5.2f} s", flush=True)
    srv.close()
    for c in conns:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp)
        encode = ["ffmpeg", "-loglevel", "error", "-i", str(VTEST), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
        subprocess.run([*encode, str(media / "vtest.mp4")], check=True)
        subprocess.run([*encode, "-vf", "scale=1920:1080,fps=25", "-x264-params", "bframes=0:keyint=50",
                        str(media / "hd.mp4")], check=True)
        with rtsp_files(media) as base:
            decode_cost(f"{base}/vtest", a.frames, READERS)
            decode_cost(f"{base}/hd", a.frames, {"pyav": pyav_reader})
            hung_camera(f"{base}/vtest")


if __name__ == "__main__":
    main()
