"""Write a video folder's frames pre-resized for one preset, so that they travel light to a lent GPU machine.

    python benchmarks/pack_frames.py ../shared/datasets/ped2 data/ped2s --split training [--preset lite]

A lent machine takes at most 64 MiB of repo and data per call; Ped2's training JPEGs (61 MB) no longer fit
beside the repo. This writes each frame as a lossless PNG already converted and resized by `preprocess_frame`
(its [-1, 1] floats turned back into bytes), then checks that `load_video` gives identical arrays from both
folders: the copy trains the same model, bit for bit. It only works for the preset it was written for.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.config import get_preset
from model.data import find_videos, iter_frames, load_video, preprocess_frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="dataset root (with <split>/frames/<video>/ or video files)")
    ap.add_argument("dst", type=Path)
    ap.add_argument("--split", default="training")
    ap.add_argument("--preset", default="lite")
    args = ap.parse_args()
    config = get_preset(args.preset)
    if config.channels != 1:
        raise SystemExit("pack_frames writes grey PNGs: only grey presets (lite) can use them")
    sources = find_videos(args.src, args.split)
    for source in sources:
        out = args.dst / args.split / "frames" / source.name
        out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(iter_frames(source)):
            grey = np.rint((preprocess_frame(frame, config)[0] + 1.0) * 127.5).astype(np.uint8)
            cv2.imwrite(str(out / f"{i:04d}.png"), grey)
    for a, b in zip(sources, find_videos(args.dst, args.split), strict=True):
        if a.name != b.name or not np.array_equal(load_video(a, config), load_video(b, config)):
            raise SystemExit(f"video {a.name}: the packed frames do not load identically")
    print(f"{len(sources)} videos packed into {args.dst / args.split} and checked identical")


if __name__ == "__main__":
    main()
