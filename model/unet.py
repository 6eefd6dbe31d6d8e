"""The generator: the U-Net of Liu et al. (official TensorFlow code), built from small blocks.

Level i has two 3x3 conv + ReLU with base_width * 2**i channels, no normalisation; 2x2 max-pool down;
2x2 stride-2 transposed conv up, concatenate the skip, two 3x3 conv + ReLU; a 3x3 conv to the output.
Optionally (`memory_items > 0`) a memory of normal prototypes sits at the bottleneck (Park et al., MNAD).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


class Memory(nn.Module):
    """M learned prototypes of normal bottleneck features (Park et al., CVPR 2020, "MNAD").

    Each feature vector of the bottleneck map (a query, L2-normalised) reads the softmax-weighted mix of
    the (normalised) items most like it; the decoder sees [query, read]. Trained on normal video only, the
    items can only describe normal content, so an unusual query reads back something normal and the frame
    is predicted worse. Two terms shape the items (`loss`, weighted in the training loss; inference skips it):
    compactness pulls each query to its nearest item; separateness keeps the second nearest item at least
    `margin` farther away (a triplet loss). Unlike MNAD the items are parameters learned by gradient
    descent (as in MemAE), and they never change at test time, so scoring stays causal and stateless.
    """

    def __init__(self, items: int, width: int, margin: float = 1.0) -> None:
        super().__init__()
        if items < 2:
            raise ValueError(f"a memory needs at least 2 items (separateness), got {items}")
        self.items = nn.Parameter(F.normalize(torch.randn(items, width), dim=1))
        self.margin = margin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> ((B, 2C, H, W) decoder input, (B, H, W, M) cosine of each query to each item)."""
        query = F.normalize(x, dim=1)
        items = F.normalize(self.items, dim=1)
        similarity = torch.einsum("bchw,mc->bhwm", query, items)
        read = torch.einsum("bhwm,mc->bchw", similarity.softmax(dim=-1), items)
        return torch.cat([query, read], dim=1), similarity

    def loss(self, similarity: torch.Tensor) -> torch.Tensor:
        """(2,) [compactness, separateness] from `forward`'s similarities."""
        # Between unit vectors |q - p|^2 = 2 - 2 cos(q, p): the two nearest items' distances come from the
        # similarities alone (no gather of item vectors: this runs at every training step, batch 1 on a CPU).
        sq_dist = (2.0 - 2.0 * similarity.topk(2, dim=-1).values).clamp_min(1e-8)  # (B, H, W, 2)
        compactness = sq_dist[..., 0].mean() / self.items.shape[1]  # mean squared error, query vs nearest item
        dist = sq_dist.sqrt()
        separateness = F.relu(dist[..., 0] - dist[..., 1] + self.margin).mean()
        return torch.stack([compactness, separateness])


class UNet(nn.Module):
    """A plain U-Net: (B, in_ch, H, W) -> (B, out_ch, H, W), no output activation; optionally a `Memory`
    of `memory_items` prototypes at the bottleneck."""

    def __init__(self, in_ch: int, out_ch: int, base_width: int, depth: int, memory_items: int = 0) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(depth)]
        self.stride = 2 ** (depth - 1)
        self.down = nn.ModuleList(
            [DoubleConv(in_ch, widths[0])] + [DoubleConv(widths[i - 1], widths[i]) for i in range(1, depth)]
        )
        self.pool = nn.MaxPool2d(2)
        self.memory = Memory(memory_items, widths[-1]) if memory_items else None
        bottleneck = widths[-1] * (2 if self.memory is not None else 1)
        self.up = nn.ModuleList([Up(bottleneck if i == depth - 1 else widths[i], widths[i - 1])
                                 for i in range(depth - 1, 0, -1)])
        self.head = nn.Conv2d(widths[0], out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def forward_with_memory_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and the memory's (compactness, separateness), zeros without a memory."""
        out, similarity = self._run(x)
        if self.memory is None or similarity is None:  # one is None exactly when the other is
            return out, out.new_zeros(2)
        return out, self.memory.loss(similarity)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"input H and W must be divisible by {self.stride}, got {h}x{w}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        similarity = None
        if self.memory is not None:
            x, similarity = self.memory(x)
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x), similarity


class Generator(nn.Module):
    """Predicts frame t from frames t-k..t-1.

    Input (B, k*C, H, W) in [-1, 1] (past frames concatenated on channels, oldest first);
    output (B, C, H, W) in [-1, 1].
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.unet = UNet(config.num_frames * c, c, config.base_width, config.depth, config.memory_items)

    def forward(self, past: torch.Tensor) -> torch.Tensor:
        self._check(past)
        return self._prediction(past, self.unet(past))

    def forward_with_memory_loss(self, past: torch.Tensor, crop: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and the memory's (compactness, separateness) loss terms (zeros without one): for
        training; `forward` skips the terms. `crop`: the input may be a crop of the frames (any size the
        U-Net's pooling divides), as training on crops feeds it."""
        self._check(past, crop)
        out, memory_loss = self.unet.forward_with_memory_loss(past)  # (B, C, H, W), (2,)
        return self._prediction(past, out), memory_loss

    def _check(self, past: torch.Tensor, crop: bool = False) -> None:
        cfg = self.config
        expected = cfg.num_frames * cfg.channels
        size_ok = (all(0 < s <= f and s % cfg.size_multiple == 0 for s, f in zip(past.shape[-2:], cfg.image_size)) if crop
                   else tuple(past.shape[-2:]) == cfg.image_size)
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
