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


def test_model_config_accepts_a_legacy_memory_items_key_only_when_zero() -> None:
    """The shipped weights record `memory_items: 0` (a removed experiment): they load; any other value is a
    generator this code cannot build, refused with a clear error."""
    from pathlib import Path

    shipped = torch.load(Path(__file__).resolve().parents[2] / "weights" / "ffp-ped2-lite.pt",
                         weights_only=True)["model_config"]
    assert shipped["memory_items"] == 0
    assert ModelConfig.from_dict(shipped) == get_preset("lite")  # the preset is what the shipped weights use
    legacy = {**get_preset("lite").to_dict(), "memory_items": 0}
    assert ModelConfig.from_dict(legacy) == get_preset("lite")
    assert "memory_items" not in ModelConfig.from_dict(legacy).to_dict()
    with pytest.raises(ValueError, match="memory_items=10"):
        ModelConfig.from_dict({**legacy, "memory_items": 10})
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**legacy, "colour": 3})
