"""The paper's losses as pure functions. Each returns one value per sample (shape (B,)) so that the same
code computes the training objective (take .mean()) and the per-frame test scores (model/scoring.py).
Frames are (B, C, H, W) in [-1, 1]."""
from __future__ import annotations

import torch
from torch import nn


def intensity_loss(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L_int: mean squared error per sample."""
    return (pred - real).pow(2).flatten(1).mean(1)


def _abs_grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Plain neighbour differences, as the paper defines them (alpha = 1).
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs()
    return dx, dy


def gradient_loss(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L_gd = mean | |dx(real)| - |dx(pred)| | + mean | |dy(real)| - |dy(pred)| |, per sample."""
    pdx, pdy = _abs_grads(pred)
    rdx, rdy = _abs_grads(real)
    return (rdx - pdx).abs().flatten(1).mean(1) + (rdy - pdy).abs().flatten(1).mean(1)


def flow_loss(flownet: nn.Module, last: torch.Tensor, pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L_op = mean |f(last, pred) - f(last, real)| per sample.

    The flow network is frozen (its parameters do not train) but NOT detached: the gradient of this loss
    reaches the generator through f(last, pred). The best-known PyTorch port detaches both flows, which
    makes this term train nothing; tests/model/test_losses.py guards against that.
    """
    flow_pred = flownet(last, pred)
    with torch.no_grad():
        flow_real = flownet(last, real)
    return (flow_pred - flow_real).abs().flatten(1).mean(1)


def generator_adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN, generator side: mean((D(pred) - 1)^2) / 2 per sample."""
    return (d_fake - 1).pow(2).flatten(1).mean(1) / 2


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN, discriminator side: mean((D(real) - 1)^2) / 2 + mean(D(pred)^2) / 2 per sample."""
    return (d_real - 1).pow(2).flatten(1).mean(1) / 2 + d_fake.pow(2).flatten(1).mean(1) / 2


def psnr(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The paper's score: 10 log10(1 / MSE) on [0, 1] images, per sample (frames given in [-1, 1])."""
    mse = ((pred - real) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
