"""Which flow for the scoring term L_flow: the shipped flow CNN (batched, bf16) or OpenCV DIS per frame?

    python benchmarks/flow_scoring.py [--flownet weights/flownet-lite.pt] [--batch 1 4 8]

Per scored frame L_flow needs two flows: f(last, predicted) and f(last, real). Prints ms per frame.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from model.flownet import load_flownet

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn, iters: int = 30) -> float:  # type: ignore[no-untyped-def]
    for _ in range(3):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--flownet", type=Path, default=ROOT / "weights" / "flownet-lite.pt")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    net = load_flownet(a.flownet)
    h, w = net.config.image_size
    print(f"flow for L_flow at {h}x{w}, {a.threads} threads; ms per scored frame (2 flows)")
    for b in a.batch:
        x = torch.rand(b, net.config.channels, h, w) * 2 - 1
        def run(x: torch.Tensor = x) -> None:  # bound now: each batch size times its own input
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                net(x, x)
                net(x, x)
        print(f"  flow CNN bf16, batch {b}: {median_ms(run) / b:.2f} ms/frame")
    g = (np.random.rand(h, w) * 255).astype(np.uint8)
    for name, preset in (("ULTRAFAST", cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST), ("FAST", cv2.DISOPTICAL_FLOW_PRESET_FAST),
                         ("MEDIUM", cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)):
        dis = cv2.DISOpticalFlow_create(preset)
        ms = median_ms(lambda dis=dis: (dis.calc(g, g, None), dis.calc(g, g, None)))
        print(f"  OpenCV DIS {name}: {ms:.2f} ms/frame")


if __name__ == "__main__":
    main()
