import pytest
import torch

from model.config import ModelConfig, get_preset
from model.discriminator import PatchDiscriminator
from model.unet import Generator, count_parameters


def test_paper_preset_matches_official_architecture() -> None:
    cfg = get_preset("paper")
    gen = Generator(cfg)
    # 4 levels 64/128/256/512, two 3x3 convs per level, 2x2 transposed convs, 3x3 output conv to 3 channels
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in gen.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs[:8]] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert convs[0].in_channels == 12  # 4 RGB frames
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [u.out_channels for u in ups] == [256, 128, 64] and all(u.kernel_size == (2, 2) for u in ups)
    assert convs[-1].out_channels == 3
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in gen.modules())
    n = count_parameters(gen)
    assert 7.6e6 < n < 7.8e6, n  # "about 7.7 M parameters"


def test_paper_discriminator_patch_map_is_35x35() -> None:
    d = PatchDiscriminator(3, get_preset("paper").disc_widths)
    with torch.no_grad():
        out = d(torch.zeros(1, 3, 256, 256))
    assert out.shape == (1, 1, 35, 35)
    assert float(out.min()) >= 0 and float(out.max()) <= 1  # sigmoid


@pytest.mark.parametrize("preset", ["lite", "paper"])
def test_generator_shapes_and_range(preset: str) -> None:
    cfg = get_preset(preset, image_size=(64, 64)) if preset == "paper" else get_preset(preset)
    gen = Generator(cfg).eval()
    x = torch.rand(2, cfg.num_frames * cfg.channels, *cfg.image_size) * 2 - 1
    with torch.no_grad():
        y = gen(x)
    assert y.shape == (2, cfg.channels, *cfg.image_size)
    assert float(y.abs().max()) <= 1.0


def test_generator_parameterised() -> None:
    cfg = ModelConfig(name="x", num_frames=2, channels=3, image_size=(32, 48), base_width=8, depth=3)
    y = Generator(cfg)(torch.zeros(1, 6, 32, 48))
    assert y.shape == (1, 3, 32, 48)


def test_bad_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(image_size=(100, 128))
    gen = Generator(get_preset("lite"))
    with pytest.raises(ValueError, match="expects"):
        gen(torch.zeros(1, 3, 128, 128))


def test_residual_generator_starts_near_copying_the_last_frame() -> None:
    cfg = get_preset("lite")
    x = torch.rand(1, cfg.num_frames, *cfg.image_size) * 2 - 1
    assert cfg.residual
    with torch.no_grad():
        y = Generator(cfg)(x)
    assert float((y - x[:, -1:]).abs().mean()) < 0.2


def test_memory_reads_normalised_prototypes_and_its_terms_can_be_trained() -> None:
    from model.unet import Memory

    torch.manual_seed(0)
    memory = Memory(items=4, width=8)
    x = torch.randn(2, 8, 3, 5)
    with torch.no_grad():
        out, similarity = memory(x)
        terms = memory.loss(similarity)
    assert out.shape == (2, 16, 3, 5) and similarity.shape == (2, 3, 5, 4)
    query, read = out[:, :8], out[:, 8:]
    assert torch.allclose(query.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5)
    assert float(read.norm(dim=1).max()) <= 1.0 + 1e-5  # a convex mix of unit vectors
    compactness, separateness = terms
    assert 0 <= float(compactness) <= 4 / 8 + 1e-6 and float(separateness) >= 0
    # Queries equal to items: compactness is zero; the items are orthogonal, so the second nearest is at
    # distance sqrt(2) > margin 1 and separateness is zero too.
    with torch.no_grad():
        memory.items.copy_(torch.eye(4, 8))
    on_items = torch.eye(4, 8)[torch.tensor([0, 1, 2, 3, 0, 1])].T.reshape(1, 8, 2, 3) * 3.0
    with torch.no_grad():
        c, s = memory.loss(memory(on_items)[1])
    assert float(c) < 1e-8 and float(s) < 1e-6
    # Gradient descent on the two terms pulls queries and items together.
    feats = torch.randn(1, 8, 4, 4, requires_grad=True)
    opt = torch.optim.Adam([feats, *memory.parameters()], lr=0.05)
    def terms() -> torch.Tensor:
        return memory.loss(memory(feats)[1]).sum()

    first = float(terms().detach())
    for _ in range(100):
        opt.zero_grad()
        terms().backward()
        opt.step()
    assert float(terms().detach()) < 0.5 * first


def test_generator_with_memory_shapes_config_and_errors() -> None:
    cfg = get_preset("lite", memory_items=10)
    gen = Generator(cfg).eval()
    x = torch.rand(2, cfg.num_frames, *cfg.image_size) * 2 - 1
    with torch.no_grad():
        y, terms = gen.forward_with_memory_loss(x)
        assert torch.equal(gen(x), y)
    assert y.shape == (2, 1, 128, 128) and terms.shape == (2,)
    assert gen.unet.memory is not None and gen.unet.memory.items.shape == (10, 128)
    assert count_parameters(gen) > count_parameters(Generator(get_preset("lite")))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    # weights saved before the memory existed have no such field: they load as no memory
    old = get_preset("lite").to_dict()
    del old["memory_items"]
    assert ModelConfig.from_dict(old).memory_items == 0
    with torch.no_grad():
        assert torch.equal(Generator(get_preset("lite")).forward_with_memory_loss(x)[1], torch.zeros(2))
    with pytest.raises(ValueError, match="memory_items"):
        get_preset("lite", memory_items=1)
