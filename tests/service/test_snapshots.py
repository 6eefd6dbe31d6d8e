"""Event images: the box sits on the region of highest error, and the caption carries the camera and time."""
from __future__ import annotations

import cv2
import numpy as np

from service.snapshots import annotate, clip_caption, event_images, unix_caption, worst_region


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _red(img: np.ndarray) -> np.ndarray:
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return (r > 120) & (r - np.maximum(g, b) > 60)


def test_the_box_is_around_the_hottest_patch() -> None:
    heat = np.zeros((128, 128), np.float32)
    heat[90:100, 20:30] = 1.0  # a hot blob, low left
    heat[10:12, 110:112] = 0.6  # a smaller, cooler one, top right
    x0, y0, x1, y1 = worst_region(heat)
    assert x0 <= 20 / 128 and x1 >= 30 / 128 and y0 <= 90 / 128 and y1 >= 100 / 128
    assert (x1 - x0) == (y1 - y0) == 16 / 128  # the local score's patch: 1/8 of the height


def test_the_box_stays_inside_the_frame_at_an_edge() -> None:
    heat = np.zeros((64, 80), np.float32)
    heat[0:3, 77:80] = 1.0
    x0, y0, x1, y1 = worst_region(heat)
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and x1 == 1.0 and y0 == 0.0


def test_snapshot_and_heatmap_carry_box_and_caption() -> None:
    frame = np.full((240, 320, 3), 60, np.uint8)
    heat = np.zeros((128, 128), np.float32)
    heat[60:70, 96:106] = 1.0
    snap, overlay = (_decode(b) for b in event_images(frame, heat, unix_caption("door", 0.0)))
    assert snap.shape == overlay.shape == (240, 320, 3)
    red = _red(snap)
    ys, xs = np.nonzero(red)
    # the box's outline surrounds the blob (scaled to 320x240: x 240..265, y 112..131) and nothing else is red
    assert xs.min() <= 240 and xs.max() >= 265 and ys.min() <= 112 and ys.max() >= 131
    assert xs.min() >= 200 and ys.max() <= 160
    assert not red[140:, :].any()
    # the caption: a dark band with white text at the top left, where the plain frame is mid grey
    band = snap[:12, :120]
    assert (band.max(axis=2) > 200).any() and (band.max(axis=2) < 30).any()
    assert not (snap[200:, :120].max(axis=2) > 200).any()


def test_captions() -> None:
    assert unix_caption("door", 0.0) == "door  1970-01-01 00:00:00 UTC"
    assert clip_caption("clip", 3.456) == "clip  t = 3.46 s"


def test_annotate_takes_grey_frames() -> None:
    out = annotate(np.zeros((50, 60), np.uint8), (0.1, 0.1, 0.5, 0.5), "x")
    assert out.shape == (50, 60, 3) and _red(out).any()
