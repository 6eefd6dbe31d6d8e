"""A synthetic scene with regular motion, written in the Liu et al. layout, with an injected irregular event.

Normal: a bright square crosses a textured background left to right at a constant 2 px/frame.
Anomaly (test videos only, a labelled interval): the square jumps about at random (irregular motion) and a
second dark square appears.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def render(t: int, size: int, rng: np.random.Generator | None, anomalous: bool, bg: np.ndarray) -> np.ndarray:
    img = bg.copy()
    s = size // 8
    x = (2 * t) % (size - s)
    y = size // 2 - s // 2
    if anomalous and rng is not None:
        x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
        x2, y2 = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
        img[y2:y2 + s, x2:x2 + s] = 20
    img[y:y + s, x:x + s] = 235
    return img


def background(size: int) -> np.ndarray:
    """The scene's static texture (size x size grey uint8)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return (90 + 30 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)


def make_dataset(root: Path, size: int = 64, train_videos: int = 4, test_videos: int = 2, length: int = 60,
                 seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    bg = background(size)
    labels: dict[str, list[int]] = {}
    for split, n in (("training", train_videos), ("testing", test_videos)):
        for v in range(n):
            folder = root / split / "frames" / f"{v + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            offset = int(rng.integers(0, 50))
            lab = [0] * length
            if split == "testing":
                start = length // 3 + v * 3
                for t in range(start, start + length // 4):
                    lab[t] = 1
            for t in range(length):
                frame = render(t + offset, size, rng, bool(lab[t]), bg)
                cv2.imwrite(str(folder / f"{t:03d}.png"), frame)
            if split == "testing":
                labels[f"{v + 1:02d}"] = lab
    (root / "labels_frame_level.json").write_text(json.dumps(labels))
    return root


def scene_frames(length: int, size: int = 64, offset: int = 0) -> list[np.ndarray]:
    """Normal frames of the synthetic scene (grey uint8): the square crossing the textured background."""
    bg = background(size)
    return [render(t + offset, size, None, False, bg) for t in range(length)]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An mp4 (MPEG-4 part 2, OpenCV's mp4v) of grey or BGR uint8 frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path
