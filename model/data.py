"""Data: find videos (Liu et al. frame folders, video files, folders of videos), decode and preprocess them
once into memory, and serve windows of k+1 frames for training.

Layouts understood by `find_videos(root, split)`:
  root/<split>/frames/NN/NNN.jpg      Liu et al. (UCSD Ped1/Ped2, Avenue, ShanghaiTech converted)
  root/<split>/NN/NNN.jpg             the same without the frames/ level
  root/<split>/*.avi|mp4|...           a folder of videos
  root itself being any of the above, or a single video file.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .config import ModelConfig

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}


class DataError(ValueError):
    """A dataset path or layout is missing or wrong."""


@dataclass(frozen=True)
class VideoSource:
    name: str  # e.g. "01"; matches label keys
    path: Path  # a folder of frames or a video file

    @property
    def is_frames(self) -> bool:
        return self.path.is_dir()


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def _videos_in(folder: Path) -> list[VideoSource]:
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and _frame_files(p))
    if subdirs:
        return [VideoSource(p.name, p) for p in subdirs]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    return [VideoSource(p.stem, p) for p in files]


def find_videos(root: str | Path, split: str | None = None) -> list[VideoSource]:
    """The videos of a split ('training' / 'testing'), or of root itself when split is None or absent."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset path does not exist: {root}")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_EXTS:
            raise DataError(f"not a video file: {root}")
        return [VideoSource(root.stem, root)]
    candidates = [root / split / "frames", root / split] if split else []
    candidates += [root / "frames", root]
    for c in candidates:
        if c.is_dir():
            videos = _videos_in(c)
            if videos:
                return videos
    want = f"{root}/{split}/frames/NN/NNN.jpg, {root}/{split}/*.mp4" if split else f"{root}/NN/NNN.jpg or videos"
    raise DataError(f"no videos found under {root} (expected a layout like {want})")


def iter_frames(source: VideoSource | Path) -> Iterator[np.ndarray]:
    """Decoded frames, uint8 BGR (or grey for grey JPEGs)."""
    path = source.path if isinstance(source, VideoSource) else Path(source)
    if path.is_dir():
        for f in _frame_files(path):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"cannot decode image {f}")
            yield img
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"cannot open video {path}")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
    finally:
        cap.release()


def video_fps(path: Path) -> float | None:
    """The frame rate a video file declares; None for a folder of frames or a missing or implausible rate."""
    if path.is_dir():
        return None
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) and 1.0 <= fps <= 1000.0 else None


def count_frames(source: VideoSource) -> int:
    if source.is_frames:
        return len(_frame_files(source.path))
    return sum(1 for _ in iter_frames(source))


def resize_frame(frame: np.ndarray, config: ModelConfig) -> np.ndarray:
    """One decoded frame (H, W, 3) BGR or (H, W) grey uint8 -> the model's input image at config's size, still
    uint8: (h, w) grey or (h, w, 3) RGB. Recorded footage stores exactly this (model.footage), so training on
    it sees the inputs that scoring computes from the live frame."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if config.channels == 1:
        img = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    else:
        img = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    h, w = config.image_size
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def normalize_image(img: np.ndarray) -> np.ndarray:
    """A resized uint8 image (h, w) grey or (h, w, 3) RGB -> (C, h, w) float32 in [-1, 1]."""
    out = img.astype(np.float32) / 127.5 - 1.0
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def preprocess_frame(frame: np.ndarray, config: ModelConfig) -> np.ndarray:
    """One decoded frame (H, W, 3) BGR or (H, W) grey uint8 -> (C, h, w) float32 in [-1, 1] at config's size."""
    return normalize_image(resize_frame(frame, config))


# normalize_image's value of every uint8 level: uint8 windows become floats by a lookup in this table, so they
# are bit-identical to what preprocess_frame gives for the same image, on any device
UINT8_TO_FLOAT = torch.from_numpy(normalize_image(np.arange(256, dtype=np.uint8)[None])[0, 0])


def load_video(source: VideoSource, config: ModelConfig) -> np.ndarray:
    """All frames of a video, preprocessed: (T, C, H, W) float32 in [-1, 1]."""
    frames = [preprocess_frame(f, config) for f in iter_frames(source)]
    if not frames:
        raise DataError(f"video has no frames: {source.path}")
    return np.stack(frames)


def load_videos(sources: list[VideoSource], config: ModelConfig, progress: bool = False) -> list[np.ndarray]:
    from tqdm import tqdm

    return [load_video(s, config) for s in tqdm(sources, desc="decode", disable=not progress, leave=False)]


class WindowDataset(Dataset[torch.Tensor]):
    """Every full window of every video: k+1 frames `stride` apart, (k+1, C, H, W) float32 in [-1, 1].
    Videos are (T, C, H, W) float32 in [-1, 1], or uint8 images (normalised per window through UINT8_TO_FLOAT:
    a quarter of the memory for long recorded footage). No window spans two videos."""

    def __init__(self, videos: list[np.ndarray], num_frames: int, stride: int = 1) -> None:
        self.videos = [torch.from_numpy(v) for v in videos]
        self.table = UINT8_TO_FLOAT
        self.k, self.stride = num_frames, stride
        span = num_frames * stride  # video frames from the first past frame to the predicted one
        self.index = [(v, t) for v, vid in enumerate(videos) for t in range(len(vid) - span)]
        if not self.index:
            raise DataError(f"no window spanning {span + 1} frames: videos are too short")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.videos)

    def to(self, device: torch.device) -> WindowDataset:
        """Keep the frames on `device` (a GPU): windows are then cut and stacked there, with no host copy per
        step (on an H200 the paper preset trained at 15.5 steps/s with frames on the host)."""
        self.videos = [v.to(device) for v in self.videos]
        self.table = self.table.to(device)
        return self

    def __getitem__(self, i: int) -> torch.Tensor:
        v, t = self.index[i]
        window = self.videos[v][t:t + self.k * self.stride + 1:self.stride]
        return self.table[window.long()] if window.dtype == torch.uint8 else window


def split_holdout(sources: list[VideoSource], holdout: int) -> tuple[list[VideoSource], list[VideoSource]]:
    """Hold out the last `holdout` normal videos for validation and calibration (never test labels)."""
    if holdout <= 0:
        return sources, []
    if holdout >= len(sources):
        raise DataError(f"cannot hold out {holdout} of {len(sources)} training videos")
    return sources[:-holdout], sources[-holdout:]


def check_crop(crop: int, config: ModelConfig) -> None:
    """A training crop must fit the frames and pass the U-Net's pooling steps whole."""
    multiple = config.size_multiple
    if crop < multiple or crop % multiple or crop > min(config.image_size):
        raise ValueError(f"--crop must be a multiple of {multiple} between {multiple} and "
                         f"{min(config.image_size)} for this preset, got {crop}")


def random_crops(windows: list[torch.Tensor], crop: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One random crop x crop square per window, at the same place in its k+1 frames (so that the motion in
    it is the video's). Why: the two-hour CPU budget limits the number of updates (model card), and four
    64x64 crops cost about what one whole 128x128 window costs (measured: 12.8 against 13.5-14 steps/s on two
    cores), so an update can see four windows at batch 1's price; a fully convolutional U-Net still scores
    whole frames."""
    out = []
    for w in windows:
        h, wd = w.shape[-2:]
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(wd - crop + 1, (1,), generator=gen))
        out.append(w[..., top:top + crop, left:left + crop])
    return out
