"""Event images: a JPEG of the peak frame and a JPEG of its prediction error as a colormap over the frame."""
from __future__ import annotations

import cv2
import numpy as np

# Prediction errors of normal frames are a few percent of the range; this floor keeps a clean frame dark
# instead of stretching its noise to full red.
HEAT_FLOOR = 0.1


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def heatmap_overlay(frame: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """frame (H, W, 3) uint8 BGR or (H, W) grey; heatmap (h, w) in [0, 1] -> (H, W, 3) JET overlay."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    h, w = frame.shape[:2]
    heat = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat / max(float(heat.max()), HEAT_FLOOR), 0.0, 1.0)
    color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(frame, 1 - alpha, color, alpha, 0.0)


def event_images(frame: np.ndarray, heatmap: np.ndarray) -> tuple[bytes, bytes]:
    """(snapshot JPEG, heatmap JPEG) of one frame."""
    return encode_jpeg(frame), encode_jpeg(heatmap_overlay(frame, heatmap))
