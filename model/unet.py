"""The generator: the U-Net of Liu et al. (official TensorFlow code), built from small blocks.

Level i has two 3x3 conv + ReLU with base_width * 2**i channels, no normalisation; 2x2 max-pool down;
2x2 stride-2 transposed conv up, concatenate the skip, two 3x3 conv + ReLU; a 3x3 conv to the output.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


class DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Transposed conv up, concatenate the encoder skip, two 3x3 convs."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(out_ch * 2, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """A plain U-Net: (B, in_ch, H, W) -> (B, out_ch, H, W), no output activation."""

    def __init__(self, in_ch: int, out_ch: int, base_width: int, depth: int) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(depth)]
        self.stride = 2 ** (depth - 1)
        self.down = nn.ModuleList(
            [DoubleConv(in_ch, widths[0])] + [DoubleConv(widths[i - 1], widths[i]) for i in range(1, depth)]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([Up(widths[i], widths[i - 1]) for i in range(depth - 1, 0, -1)])
        self.head = nn.Conv2d(widths[0], out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"input H and W must be divisible by {self.stride}, got {h}x{w}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)


class Generator(nn.Module):
    """Predicts frame t from frames t-k..t-1.

    Input (B, k*C, H, W) in [-1, 1] (past frames concatenated on channels, oldest first);
    output (B, C, H, W) in [-1, 1].
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.unet = UNet(config.num_frames * c, c, config.base_width, config.depth)

    def forward(self, past: torch.Tensor, crop: bool = False) -> torch.Tensor:
        """`crop`: the input may be a crop of the frames (any size the U-Net's pooling divides), as training
        on crops feeds it; otherwise it must be whole frames of the configured size."""
        self._check(past, crop)
        return self._prediction(past, self.unet(past))  # (B, C, H, W)

    def _check(self, past: torch.Tensor, crop: bool = False) -> None:
        cfg = self.config
        expected = cfg.num_frames * cfg.channels
        if crop:
            sides = zip(past.shape[-2:], cfg.image_size, strict=False)
            size_ok = all(0 < s <= f and s % cfg.size_multiple == 0 for s, f in sides)
        else:
            size_ok = tuple(past.shape[-2:]) == cfg.image_size
        if past.ndim != 4 or past.shape[1] != expected or not size_ok:
            raise ValueError(
                f"generator {cfg.name!r} expects (B, {expected}, {cfg.image_size[0]}, {cfg.image_size[1]}), "
                f"got {tuple(past.shape)}"
            )

    def _prediction(self, past: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.residual:
            # Predict the change from the last frame: most of a surveillance frame is static, so this
            # converges much faster than regressing the whole picture (paper-notes, measured on Ped2).
            last = past[:, -cfg.channels:]
            return (last + torch.tanh(out)).clamp(-1.0, 1.0)
        return torch.tanh(out)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
