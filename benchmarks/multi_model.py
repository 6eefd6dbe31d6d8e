"""Several models in one inference worker: what one batch round costs when every camera has its own model.

    python benchmarks/multi_model.py [--cameras 4] [--threads N] [--iters 30] [--json out.json]

One round = one window of each camera. Ways to run it, all on the generator forward the scorer runs on a CPU
(fp32, traced and frozen where tracing applies; channels_last input):
  shared     one model for every camera: one forward of batch N (today's single-model service);
  per-model  N distinct models: N traced forwards of batch 1 (one forward per model);
  vmap       N distinct models stacked with torch.func.stack_module_state, one vmap'd functional_call (eager:
             TorchScript cannot trace vmap);
  grouped    N distinct models fused into one U-Net of grouped convolutions (groups=N), traced and frozen.
Prints ms per round (median). A benchmark, not a test: the numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from model.config import ModelConfig, get_preset
from model.scoring import build_forward
from model.unet import Generator, UNet

Forward = Callable[[torch.Tensor], torch.Tensor]


def grouped_conv(convs: list[Any]) -> nn.Module:
    """N convolutions (Conv2d or ConvTranspose2d) of one shape -> one with groups=N whose group g is convs[g]."""
    c0 = convs[0]
    n = len(convs)
    out: Any
    if isinstance(c0, nn.ConvTranspose2d):
        out = nn.ConvTranspose2d(c0.in_channels * n, c0.out_channels * n, c0.kernel_size, stride=c0.stride, groups=n)
    else:
        out = nn.Conv2d(c0.in_channels * n, c0.out_channels * n, c0.kernel_size, padding=c0.padding, groups=n)
    with torch.no_grad():
        out.weight.copy_(torch.cat([c.weight for c in convs]))
        out.bias.copy_(torch.cat([c.bias for c in convs]))
    return out  # type: ignore[no-any-return]


class GroupedUNet(nn.Module):
    """N U-Nets of one architecture as one: (B, N*in, H, W) -> (B, N*out, H, W), model g on channel group g."""

    def __init__(self, unets: list[UNet]) -> None:
        super().__init__()
        self.n = len(unets)
        nets: list[Any] = unets

        def double(blocks: list[Any]) -> nn.Sequential:
            return nn.Sequential(grouped_conv([b[0] for b in blocks]), nn.ReLU(inplace=True),
                                 grouped_conv([b[2] for b in blocks]), nn.ReLU(inplace=True))

        levels, ups = range(len(unets[0].down)), range(len(unets[0].up))
        self.down = nn.ModuleList([double([u.down[i] for u in nets]) for i in levels])
        self.ups = nn.ModuleList([grouped_conv([u.up[i].up for u in nets]) for i in ups])
        self.up_convs = nn.ModuleList([double([u.up[i].conv for u in nets]) for i in ups])
        self.head = grouped_conv([u.head for u in unets])
        self.pool = nn.MaxPool2d(2)

    def _cat(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        # Each group's input is [its skip, its up]: interleave per group, not the whole tensors.
        b, _, h, w = skip.shape
        s, u = skip.view(b, self.n, -1, h, w), up.view(b, self.n, -1, h, w)
        return torch.cat([s, u], dim=2).view(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            x = conv(self._cat(skips.pop(), up(x)))
        return self.head(x)  # type: ignore[no-any-return]


def grouped_forward(gens: list[Generator], cfg: ModelConfig) -> Forward:
    """The N generators (residual lite) as one traced+frozen forward: (N, k*C, H, W) -> (N, C, H, W)."""
    net = GroupedUNet([g.unet for g in gens]).eval()
    n, c = len(gens), cfg.channels
    example = torch.zeros(1, n * cfg.num_frames * c, *cfg.image_size)
    traced = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))  # type: ignore[no-untyped-call]

    def forward(past: torch.Tensor) -> torch.Tensor:
        out = traced(past.reshape(1, -1, *past.shape[-2:]))  # (1, N*C, H, W)
        last = past[:, -c:]
        return (last + torch.tanh(out.view(n, c, *out.shape[-2:]))).clamp(-1.0, 1.0)
    return forward


def vmap_forward(gens: list[Generator]) -> Forward:
    params, buffers = stack_module_state(gens)  # type: ignore[arg-type]
    base = copy.deepcopy(gens[0]).to("meta")

    def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x.unsqueeze(0),)).squeeze(0)  # type: ignore[no-any-return]

    batched = torch.vmap(one)
    return lambda past: batched(params, buffers, past)  # type: ignore[no-any-return]


def ms_per_round(fn: Callable[[], object], iters: int, warmup: int = 3) -> float:
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=4, help="cameras = distinct models")
    p.add_argument("--preset", default="lite")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="torch threads (default: the service's, half the cores)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    n, cpu = args.cameras, torch.device("cpu")
    gens = []
    for seed in range(n):
        torch.manual_seed(seed)
        gens.append(Generator(cfg).eval().requires_grad_(False).to(memory_format=torch.channels_last))  # type: ignore[call-overload]
    x = torch.rand(n, cfg.num_frames * cfg.channels, *cfg.image_size).mul(2).sub(1)
    x = x.contiguous(memory_format=torch.channels_last)
    shared = build_forward(gens[0], cfg, cpu, "fp32", optimize=True)
    separate = [build_forward(g, cfg, cpu, "fp32", optimize=True) for g in gens]
    vmapped = vmap_forward(gens)
    grouped = grouped_forward(gens, cfg)
    with torch.inference_mode():  # the fused variants compute what the separate models do
        ref = torch.cat([f(x[i:i + 1]) for i, f in enumerate(separate)])
        for name, f in (("vmap", vmapped), ("grouped", grouped)):
            err = float((f(x) - ref).abs().max())
            assert err < 1e-4, f"{name} differs from the separate models by {err}"
    rounds: dict[str, Callable[[], object]] = {
        "shared": lambda: shared(x),
        "per-model": lambda: [f(x[i:i + 1]) for i, f in enumerate(separate)],
        "vmap": lambda: vmapped(x),
        "grouped": lambda: grouped(x),
    }
    results = {name: round(ms_per_round(fn, args.iters), 2) for name, fn in rounds.items()}
    print(f"torch {torch.__version__}, {args.threads} threads, preset {cfg.name}, {n} cameras, "
          f"median of {args.iters}; load avg {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<10} {'ms per round':>12} {'x shared':>9}")
    for name, ms in results.items():
        print(f"{name:<10} {ms:>12.2f} {ms / results['shared']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "cameras": n, "preset": cfg.name,
                                         "ms_per_round": results}, indent=2))


if __name__ == "__main__":
    main()
