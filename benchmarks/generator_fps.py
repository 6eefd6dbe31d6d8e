"""Generator speed on this machine, through the same forward the scorer uses (`model.scoring.build_forward`):
fp32 eager, fp32 optimised (traced + frozen: what the service runs on a CPU), bf16 autocast; batch 1 and 4;
all with channels_last input.

    python benchmarks/generator_fps.py [--presets lite paper] [--threads N] [--widths W ...] [--depths D ...]

Prints ms per frame (median); --json writes the numbers. A benchmark, not a test: the numbers depend on the
machine (and on anything else running on it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from model.config import ModelConfig, get_preset
from model.scoring import build_forward
from model.unet import Generator, count_parameters

VARIANTS = (("fp32 eager", "fp32", False), ("fp32 optimised", "fp32", True), ("bf16 autocast", "bf16", False))


def ms_per_frame(gen: Generator, cfg: ModelConfig, precision: str, optimize: bool, batch: int, iters: int,
                 warmup: int = 3) -> float:
    cpu = torch.device("cpu")
    forward = build_forward(gen, cfg, cpu, precision, optimize=optimize)
    x = torch.randn(batch, cfg.num_frames * cfg.channels, *cfg.image_size).contiguous(
        memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            forward(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000 / batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["lite", "paper"])
    p.add_argument("--widths", nargs="*", type=int, default=[], help="also try lite with these base widths")
    p.add_argument("--depths", nargs="*", type=int, default=[], help="also try lite with these depths")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="write results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    configs = [get_preset(n) for n in args.presets]
    configs += [get_preset("lite", base_width=w, name=f"lite-w{w}") for w in args.widths]
    configs += [get_preset("lite", depth=d, name=f"lite-d{d}") for d in args.depths]
    rows = []
    print(f"torch {torch.__version__}, {args.threads} threads, channels_last, median of {args.iters}; ms per frame")
    head = " ".join(f"{v[0] + f' B{b}':>18}" for v in VARIANTS for b in (1, 4))
    print(f"{'preset':<10} {'params':>10} {'input':>14} {head}")
    for cfg in configs:
        torch.manual_seed(0)
        gen = Generator(cfg).to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
        iters = args.iters if cfg.image_size[0] <= 128 else max(3, args.iters // 10)
        shape = f"{cfg.num_frames}x{cfg.channels}x{cfg.image_size[0]}x{cfg.image_size[1]}"
        row: dict[str, object] = {"preset": cfg.name, "params": count_parameters(gen), "input": shape}
        cells = []
        for name, precision, optimize in VARIANTS:
            for batch in (1, 4):
                ms = ms_per_frame(gen, cfg, precision, optimize, batch, iters)
                row[f"{name} B{batch} ms"] = round(ms, 2)
                cells.append(f"{ms:>18.2f}")
        rows.append(row)
        print(f"{cfg.name:<10} {row['params']:>10,} {shape:>14} {' '.join(cells)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
