"""CUDA paths: scoring, training and the service's inference worker on a GPU.

CI has no GPU, so these are skipped there with that reason; the project's device check runs them on a lent GPU
machine (`python -m pytest -q tests/test_gpu.py`). Every CPU path they mirror is tested elsewhere.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import WEIGHTS_DIR
from model.predictor import load_predictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")


def moving_square_windows(n: int, k: int, size: int = 240) -> np.ndarray:
    """n windows of k + 1 frames of a square moving 2 px/frame over texture: predictable motion."""
    from tests.model.synthetic import background, render

    bg = background(size)
    frames = [np.repeat(render(t, size, None, False, bg)[..., None], 3, axis=2) for t in range(n + k)]
    return np.stack([np.stack(frames[i:i + k + 1]) for i in range(n)])


def test_cuda_predictor_scores_like_the_cpu_one() -> None:
    cpu = load_predictor(device="cpu", precision="fp32")
    gpu = load_predictor(device="cuda")
    assert gpu.device.type == "cuda" and gpu.precision in ("bf16", "fp16", "fp32")
    raw = moving_square_windows(6, cpu.num_frames)
    windows = np.stack([[cpu.preprocess(f) for f in w] for w in raw])
    a, b = cpu.score(windows), gpu.score(windows)
    # the same model in autocast: a fraction of a dB apart, on every frame (not just on average)
    assert np.abs(a.psnr - b.psnr).max() < 0.5, (a.psnr, b.psnr)
    assert a.score is not None and b.score is not None
    assert np.abs(a.score - b.score).max() < 0.5
    assert b.heatmap.shape == a.heatmap.shape and np.isfinite(b.heatmap).all()


def test_training_on_cuda_checkpoints_and_resumes(tmp_path: Path) -> None:
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=16)
    out = tmp_path / "run"
    base = [sys.executable, "-m", "model.cli", "train", "--data", str(data), "--out", str(out), "--device", "cuda",
            "--holdout", "1", "--val-every", "2", "--arch", "image_size=[64,64]", "--flownet",
            str(WEIGHTS_DIR / "flownet-lite.pt")]  # the flow term too: the flow network runs on the GPU
    r = subprocess.run([*base, "--steps", "2"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([*base, "--steps", "4"], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resum" in r.stderr.lower()  # it went on from step 2, not from scratch
    steps = [int(line.split(",")[0]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps[-1] == 4 and json.loads((out / "summary.json").read_text())["steps"] == 4
    blob = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert blob["weights"]["meta"]["loss_weights"]["flow"] > 0


def test_inference_worker_batches_cameras_on_the_gpu() -> None:
    from service.frames import ServedModel, Window
    from service.inference import InferenceWorker

    predictor = load_predictor(device="cuda")
    raw = moving_square_windows(4, predictor.num_frames)
    windows = [np.stack([predictor.preprocess(f) for f in w]) for w in raw]
    got: list[tuple[str, float]] = []
    done = threading.Event()

    def on_scores(batch, scores, ms):  # type: ignore[no-untyped-def]
        got.extend((w.camera_id, float(s)) for w, s in zip(batch, scores.psnr, strict=True))
        if len(got) >= 4:
            done.set()

    worker = InferenceWorker(on_scores, max_batch=4, max_wait_ms=50)
    model = ServedModel(predictor, "shipped", None)
    stop = threading.Event()
    for cam in ("a", "b", "c", "d"):
        worker.register(cam)
    for cam, w in zip(("a", "b", "c", "d"), windows, strict=True):
        now = time.time()
        worker.submit(Window(cam, 0, now, w, raw[0][-1], model, media_ts=now), block=False, stop=stop)
    worker.start()
    try:
        assert done.wait(60), worker.stats()
    finally:
        worker.stop()
    assert sorted(c for c, _ in got) == ["a", "b", "c", "d"]
    direct = predictor.score(np.stack(windows)).psnr
    assert np.abs(np.sort([p for _, p in got]) - np.sort(direct)).max() < 0.5
