"""Generator frames/s, batch 1, for each preset in fp32 and bf16 (autocast + channels_last) on this machine.

    python benchmarks/generator_fps.py [--presets lite paper] [--threads N] [--width W ...]

Prints a table; --json writes the numbers. A benchmark, not a test: the numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext

import torch

from model.config import get_preset
from model.unet import Generator, count_parameters


def time_generator(gen: Generator, dtype: str, iters: int, warmup: int = 5) -> float:
    cfg = gen.config
    x = torch.randn(1, cfg.num_frames * cfg.channels, *cfg.image_size)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    if dtype == "bf16":
        gen = gen.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.to(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), ctx:
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            gen(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["lite", "paper"])
    p.add_argument("--widths", nargs="*", type=int, default=[], help="also try lite with these base widths")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="write results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    configs = [get_preset(n) for n in args.presets]
    configs += [get_preset("lite", base_width=w, name=f"lite-w{w}") for w in args.widths]
    rows = []
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, median of {args.iters}")
    print(f"{'preset':<10} {'params':>10} {'input':>14} {'fp32 ms':>8} {'fp32 fps':>9} {'bf16 ms':>8} {'bf16 fps':>9}")
    for cfg in configs:
        torch.manual_seed(0)
        gen = Generator(cfg).eval()
        iters = args.iters if cfg.image_size[0] <= 128 else max(5, args.iters // 5)
        fp32 = time_generator(gen, "fp32", iters)
        bf16 = time_generator(Generator(cfg).eval(), "bf16", iters)
        shape = f"{cfg.num_frames}x{cfg.channels}x{cfg.image_size[0]}x{cfg.image_size[1]}"
        row = {"preset": cfg.name, "params": count_parameters(gen), "input": shape, "fp32_ms": fp32,
               "fp32_fps": 1000 / fp32, "bf16_ms": bf16, "bf16_fps": 1000 / bf16}
        rows.append(row)
        print(f"{cfg.name:<10} {row['params']:>10,} {shape:>14} {fp32:>8.1f} {1000/fp32:>9.1f} {bf16:>8.1f} {1000/bf16:>9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
