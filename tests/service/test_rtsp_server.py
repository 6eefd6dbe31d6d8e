"""The test RTSP server's `--files` mode (used by benchmarks/learn_camera.py): a recorded H.264 file, served live."""
from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SERVER, SYSTEM_PYTHON, require_ffmpeg, require_rtsp


@pytest.mark.timeout(60)
def test_files_are_served_from_their_first_frame_to_their_last(tmp_path: Path) -> None:
    require_ffmpeg()
    require_rtsp()
    levels = [20 + 10 * i for i in range(20)]  # each frame its own grey level: which frame arrived is visible
    for i, v in enumerate(levels):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((64, 96, 3), v, np.uint8))
    media = tmp_path / "media"
    media.mkdir()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(tmp_path / "%03d.png"),
                    "-c:v", "libx264", "-x264-params", "keyint=10:bframes=0", "-pix_fmt", "yuv420p",
                    str(media / "clip.mp4")], check=True)
    proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--port", "0", "--files", str(media)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        for _ in range(2):  # every client plays the file from its start
            cap = cv2.VideoCapture(f"rtsp://127.0.0.1:{int(line.split()[1])}/clip", cv2.CAP_FFMPEG)
            seen = []
            ok, frame = cap.read()
            while ok:
                seen.append(float(frame.mean()))
                ok, frame = cap.read()
            cap.release()
            assert len(seen) == len(levels)
            assert np.allclose(seen, levels, atol=4), seen
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server quits with its stdin
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
