"""A small differentiable optical-flow CNN that ships with the project.

Pretrained FlowNet2 weights cannot be downloaded here, so we distil OpenCV's DIS flow (a fast classical
method) into a U-Net on the training frames (`ffp train-flow`). During generator training the network is
frozen but differentiable, so the flow loss pushes the generator to predict the right motion.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .checkpoint import WeightsError, atomic_save, safe_torch_load, verify_checksum
from .config import FlowNetConfig
from .unet import UNet

log = logging.getLogger(__name__)


class FlowNet(nn.Module):
    """f(frame_a, frame_b) -> flow (B, 2, H, W) in pixels at config.image_size, from a to b."""

    def __init__(self, config: FlowNetConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet(2 * config.channels, 2, config.base_width, config.depth)

    def takes(self, channels: int) -> bool:
        """Frames of this many channels are accepted: its own, or RGB for a grey net (see forward)."""
        return channels == self.config.channels or (channels == 3 and self.config.channels == 1)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        if frame_a.shape != frame_b.shape:
            raise ValueError(f"flow inputs differ in shape: {tuple(frame_a.shape)} vs {tuple(frame_b.shape)}")
        if frame_a.shape[1] == 3 and self.config.channels == 1:
            # A grey flow net serves an RGB generator: motion is in the luminance (the channel mean, as
            # to_uint8_grey does for DIS), and the mean is differentiable.
            frame_a, frame_b = frame_a.mean(1, keepdim=True), frame_b.mean(1, keepdim=True)
        if tuple(frame_a.shape[-2:]) != tuple(self.config.image_size):
            # Frames of another size are resized to the grid the net was trained on (differentiably): the
            # flow is then in pixels at config.image_size, whatever the generator's size.
            frame_a = nn.functional.interpolate(frame_a, size=self.config.image_size, mode="area")
            frame_b = nn.functional.interpolate(frame_b, size=self.config.image_size, mode="area")
        return self.unet(torch.cat([frame_a, frame_b], dim=1)) * self.config.flow_scale


def freeze(module: nn.Module) -> nn.Module:
    """Stop training the module's parameters; gradients still flow through it to its inputs."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def dis_flow(frame_a: np.ndarray, frame_b: np.ndarray, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> np.ndarray:
    """OpenCV DIS flow between two grey uint8 frames -> (2, H, W) float32 in pixels."""
    dis = cv2.DISOpticalFlow_create(preset)  # type: ignore[attr-defined]  # missing from the stubs
    return dis.calc(frame_a, frame_b, None).transpose(2, 0, 1).astype(np.float32)


def to_uint8_grey(frames: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] -> (N, H, W) uint8 grey."""
    grey = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    return np.clip((grey + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def make_flow_pairs(videos: list[np.ndarray], max_pairs: int, rng: np.random.Generator,
                    gaps: tuple[int, ...] = (1, 2)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample frame pairs (gap 1 or 2 to cover faster motion) and their DIS flow targets."""
    candidates = [(v, t, g) for v, vid in enumerate(videos) for g in gaps for t in range(len(vid) - g)]
    pick = rng.choice(len(candidates), size=min(max_pairs, len(candidates)), replace=False)
    a_list, b_list, f_list = [], [], []
    for i in pick:
        v, t, g = candidates[i]
        a, b = videos[v][t], videos[v][t + g]
        ga, gb = to_uint8_grey(np.stack([a, b]))
        a_list.append(a)
        b_list.append(b)
        f_list.append(dis_flow(ga, gb))
    return np.stack(a_list), np.stack(b_list), np.stack(f_list)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    while True:
        perm = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i:i + batch_size]


def train_flownet(videos: list[np.ndarray], config: FlowNetConfig, out: Path, *, steps: int = 3000,
                  batch_size: int = 8, lr: float = 1e-3, max_pairs: int = 4000, seed: int = 0,
                  max_minutes: float | None = None, progress: bool = True) -> dict[str, float]:
    """Distil DIS flow into a FlowNet. `videos` are (T, C, H, W) float arrays in [-1, 1]."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    a, b, f = make_flow_pairs(videos, max_pairs, rng)
    n_val = max(1, len(a) // 10)
    val = (torch.from_numpy(a[:n_val]), torch.from_numpy(b[:n_val]), torch.from_numpy(f[:n_val]))
    a_t, b_t, f_t = (torch.from_numpy(x[n_val:]) for x in (a, b, f))
    net = FlowNet(config)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.monotonic()
    bar = tqdm(range(steps), desc="train-flow", disable=not progress)
    batches = _batches(len(a_t), min(batch_size, len(a_t)), rng)
    for step in bar:
        idx = torch.from_numpy(next(batches))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = net(a_t[idx], b_t[idx])
        loss = (pred.float() - f_t[idx]).abs().mean()  # end-point L1, in pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(l1=f"{loss.item():.3f}")
        if max_minutes is not None and time.monotonic() - start > max_minutes * 60:
            log.info("train-flow: time box reached at step %d", step)
            break
    net.eval()
    with torch.no_grad():
        val_l1 = (net(val[0], val[1]) - val[2]).abs().mean().item()
        zero_l1 = val[2].abs().mean().item()
    metrics = {"val_epe_l1": val_l1, "zero_flow_l1": zero_l1, "pairs": float(len(a)),
               "minutes": (time.monotonic() - start) / 60}
    save_flownet(net, out, metrics)
    return metrics


def save_flownet(net: FlowNet, path: Path, metrics: dict[str, float] | None = None) -> None:
    atomic_save({"format": "ffp-flownet-v1", "config": net.config.to_dict(), "state_dict": net.state_dict(),
                 "metrics": metrics or {}}, path)


def load_flownet(path: Path) -> FlowNet:
    verify_checksum(Path(path))  # when listed in the manifest beside it
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or blob.get("format") != "ffp-flownet-v1":
        raise WeightsError(f"{path} is not an ffp flow-network file")
    net = FlowNet(FlowNetConfig.from_dict(blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return freeze(net)  # type: ignore[return-value]
