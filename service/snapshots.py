"""Event images: a JPEG of the peak frame and a JPEG of its prediction error as a colormap over the frame, both
marked with a box around the region of highest error and captioned with the camera id and the time."""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from model import ScoreConfig

# Prediction errors of normal frames are a few percent of the range; this floor keeps a clean frame dark
# instead of stretching its noise to full red.
HEAT_FLOOR = 0.1
# The box is the patch with the highest mean error: the patch size local_psnr (the anomaly score) looks at.
PATCH_FRACTION = ScoreConfig().patch_fraction
BOX_COLOR = (0, 0, 255)  # BGR red
TEXT_COLOR = (255, 255, 255)


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame


def heatmap_overlay(frame: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """frame (H, W, 3) uint8 BGR or (H, W) grey; heatmap (h, w) in [0, 1] -> (H, W, 3) JET overlay."""
    frame = _bgr(frame)
    h, w = frame.shape[:2]
    heat = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat / max(float(heat.max()), HEAT_FLOOR), 0.0, 1.0)
    color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(frame, 1 - alpha, color, alpha, 0.0)


def worst_region(heatmap: np.ndarray, patch_fraction: float = PATCH_FRACTION) -> tuple[float, float, float, float]:
    """The square patch (side patch_fraction of the height) with the highest mean error in `heatmap` (h, w), as
    fractions of the width and height: (x0, y0, x1, y1), so that it scales onto a frame of any size."""
    h, w = heatmap.shape[:2]
    side = max(1, min(h, w, round(h * patch_fraction)))
    mean = cv2.boxFilter(heatmap.astype(np.float32), -1, (side, side), normalize=True,
                         borderType=cv2.BORDER_CONSTANT)  # outside counts as no error: the box stays inside
    cy, cx = np.unravel_index(int(np.argmax(mean)), mean.shape)
    x0 = int(np.clip(cx - side // 2, 0, w - side))
    y0 = int(np.clip(cy - side // 2, 0, h - side))
    return x0 / w, y0 / h, (x0 + side) / w, (y0 + side) / h


def annotate(image: np.ndarray, region: tuple[float, float, float, float], caption: str) -> np.ndarray:
    """A copy of `image` (BGR or grey) with `region` (fractions, as worst_region gives) boxed and `caption`
    written on a dark band at the top left."""
    out = _bgr(image).copy()
    h, w = out.shape[:2]
    thick = max(2, round(max(h, w) / 240))  # JPEG chroma subsampling washes out a 1-pixel red line
    x0, y0, x1, y1 = region
    cv2.rectangle(out, (round(x0 * w), round(y0 * h)), (round(x1 * w) - 1, round(y1 * h) - 1), BOX_COLOR, thick)
    scale = max(0.35, h / 600)
    (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, th // 3)
    cv2.rectangle(out, (0, 0), (min(w, tw + 2 * pad), th + base + 2 * pad), (0, 0, 0), cv2.FILLED)
    cv2.putText(out, caption, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOR, thick, cv2.LINE_AA)
    return out


def unix_caption(camera_id: str, ts: float) -> str:
    """Caption of a live camera's event image: the camera and the wall-clock time of the frame, in UTC."""
    return f"{camera_id}  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ts))} UTC"


def clip_caption(camera_id: str, t: float) -> str:
    """Caption of an uploaded clip's event image: the time from the clip's start."""
    return f"{camera_id}  t = {t:.2f} s"


def event_images(frame: np.ndarray, heatmap: np.ndarray, caption: str) -> tuple[bytes, bytes]:
    """(snapshot JPEG, heatmap JPEG) of one frame, both boxed around the highest error and captioned."""
    region = worst_region(heatmap)
    return (encode_jpeg(annotate(frame, region, caption)),
            encode_jpeg(annotate(heatmap_overlay(frame, heatmap), region, caption)))


def write_event_images(folder: Path, event_id: str, snapshot: bytes, heatmap: bytes) -> tuple[str, str]:
    """Write an event's (snapshot, heatmap) JPEGs into `folder` (made if missing), each atomically: readers never
    see half a JPEG. Returns their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = (f"{event_id}-snapshot.jpg", f"{event_id}-heatmap.jpg")
    for name, data in zip(names, (snapshot, heatmap), strict=True):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
    return names
