import pytest
import torch

from model.config import FlowNetConfig, get_preset
from model.flownet import FlowNet, freeze
from model.losses import discriminator_loss, flow_loss, generator_adversarial_loss, gradient_loss, intensity_loss, psnr
from model.unet import Generator


def test_intensity_loss_hand_computed() -> None:
    pred = torch.tensor([[[[0.0, 1.0], [0.5, -1.0]]]])
    real = torch.tensor([[[[1.0, 1.0], [0.0, -1.0]]]])
    # squared errors 1, 0, 0.25, 0 -> mean 0.3125
    assert intensity_loss(pred, real).item() == pytest.approx(0.3125)


def test_gradient_loss_hand_computed() -> None:
    real2 = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    pred2 = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]]])
    # dx(real) = [1, 2] -> 1.5 ; dy(real) = [2, 3] -> 2.5 ; total 4.0
    assert gradient_loss(pred2, real2).item() == pytest.approx(4.0)
    assert gradient_loss(real2, real2).item() == 0.0


def test_gradient_loss_ignores_constant_offsets() -> None:
    real = torch.rand(2, 1, 8, 8)
    assert gradient_loss(real + 0.3, real).abs().max().item() < 1e-6


def test_lsgan_losses_hand_computed() -> None:
    d_fake = torch.full((1, 1, 2, 2), 0.25)
    d_real = torch.full((1, 1, 2, 2), 0.75)
    assert generator_adversarial_loss(d_fake).item() == pytest.approx((0.75**2) / 2)
    assert discriminator_loss(d_real, d_fake).item() == pytest.approx(0.25**2 / 2 + 0.25**2 / 2)


def test_psnr_of_known_mse() -> None:
    real = torch.zeros(1, 1, 4, 4)
    pred = torch.full((1, 1, 4, 4), 0.2)  # 0.1 in [0,1] units -> mse 0.01 -> 20 dB
    assert psnr(pred, real).item() == pytest.approx(20.0, abs=1e-4)


def test_flow_term_alone_gives_the_generator_gradients() -> None:
    """The flow network is frozen (no parameter gets a gradient) but not detached: the flow loss on its own
    must move the generator (the best-known PyTorch port detaches the flows and trains nothing)."""
    torch.manual_seed(0)
    cfg = get_preset("lite", num_frames=4, image_size=(32, 32), base_width=8)
    gen = Generator(cfg)
    flow = freeze(FlowNet(FlowNetConfig(image_size=(32, 32), base_width=8)))
    frames = torch.rand(2, cfg.num_frames + 1, 1, 32, 32) * 2 - 1
    past, real, last = frames[:, :4].flatten(1, 2), frames[:, 4], frames[:, 3]
    loss = flow_loss(flow, last, gen(past), real).mean()
    assert loss.item() > 0
    loss.backward()
    grads = [p.grad for p in gen.parameters()]
    assert all(g is not None for g in grads)
    total = sum(float(g.abs().sum()) for g in grads if g is not None)
    assert total > 0
    assert all(p.grad is None for p in flow.parameters())  # frozen


def test_flow_network_resizes_frames_of_another_size_to_its_grid() -> None:
    """A generator trained at another image size still gets L_flow (and its gradient) from the flow net."""
    torch.manual_seed(0)
    flow = freeze(FlowNet(FlowNetConfig(image_size=(32, 32), base_width=8)))
    a = torch.rand(2, 1, 32, 48, requires_grad=True)
    b = torch.rand(2, 1, 32, 48)
    f = flow(a, b)
    assert f.shape == (2, 2, 32, 32)  # flow in pixels at the net's own grid
    same = flow(torch.nn.functional.interpolate(a, size=(32, 32), mode="area"),
                torch.nn.functional.interpolate(b, size=(32, 32), mode="area"))
    assert torch.allclose(f, same)
    f.abs().mean().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0


def test_grey_flow_network_takes_rgb_frames_through_their_channel_mean() -> None:
    """The paper preset is RGB; the shipped flow net is grey: it sees the channel mean, differentiably."""
    torch.manual_seed(0)
    flow = freeze(FlowNet(FlowNetConfig(image_size=(32, 32), base_width=8)))
    a = torch.rand(2, 3, 32, 32, requires_grad=True)
    b = torch.rand(2, 3, 32, 32)
    f = flow(a, b)
    assert torch.allclose(f, flow(a.mean(1, keepdim=True), b.mean(1, keepdim=True)))
    assert flow.takes(1) and flow.takes(3) and not flow.takes(2)
    f.abs().mean().backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    with pytest.raises(RuntimeError):  # two channels are neither grey nor RGB: the net's first conv refuses
        flow(torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32))
