"""Training on a CPU: the generator runs channels_last (oneDNN's fast layout), the files it writes do not."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import safe_torch_load
from model.config import TrainConfig
from model.predictor import load_predictor
from model.train import train
from model.unet import Generator
from tests.model.synthetic import make_dataset


def test_a_cpu_run_trains_channels_last_and_saves_weights_in_the_default_layout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(tmp_path / "scene", size=64, train_videos=2, test_videos=1, length=12)
    layouts: list[tuple[bool, bool]] = []  # (input, first conv weight) channels_last, per training step
    forward = Generator.forward

    def spy(self: Generator, past: torch.Tensor, crop: bool = False) -> torch.Tensor:
        if self.training:
            weight = next(self.parameters())
            layouts.append((past.is_contiguous(memory_format=torch.channels_last),
                            weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)))
        return forward(self, past, crop)

    monkeypatch.setattr(Generator, "forward", spy)
    out = tmp_path / "run"
    train(TrainConfig(data=data, out=out, steps=3, holdout=1, val_every=1, threads=1, progress=False, crop=16,
                      w_int=1.0, w_grad=0.0, w_flow=0.0, w_adv=0.0, ema=0.9, device="cpu",
                      arch={"num_frames": 4, "image_size": (32, 32)}))
    monkeypatch.undo()
    assert layouts == [(True, True)] * 3
    ckpt = safe_torch_load(out / "last.pt")
    for state in (ckpt["weights"]["generator"], ckpt["generator_train"]):
        convs = [t for t in state.values() if t.dim() == 4]
        assert convs and all(t.is_contiguous() for t in state.values())
    predictor = load_predictor(out / "last.pt", device="cpu")  # the file loads and predicts whole frames
    with torch.no_grad():
        assert predictor.generator(torch.zeros(1, 4, 32, 32)).shape == (1, 1, 32, 32)
