"""The PatchGAN discriminator of Liu et al.: 4x4 convs, strides 2, 2, 2, 1, LeakyReLU, no normalisation,
a 4x4 conv to one channel and a sigmoid. Padding 2 gives the official 35x35 patch map at 256x256."""
from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: int, widths: tuple[int, ...] = (128, 256, 512, 512)) -> None:
        super().__init__()
        strides = [2] * (len(widths) - 1) + [1]
        layers: list[nn.Module] = []
        in_ch = channels
        for width, stride in zip(widths, strides, strict=False):
            layers += [nn.Conv2d(in_ch, width, 4, stride=stride, padding=2), nn.LeakyReLU(0.2, inplace=True)]
            in_ch = width
        layers += [nn.Conv2d(in_ch, 1, 4, stride=1, padding=2)]
        self.net = nn.Sequential(*layers)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, 1, h, w) probabilities that each patch is real."""
        return torch.sigmoid(self.net(frame))
