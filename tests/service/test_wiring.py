"""build_service, the one wiring path: a config's device, precision and torch_threads reach the running service
started the way the tests start it (create_app + uvicorn), and startup failures are one-line ServiceErrors."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from live_server import serve, untrained_predictor

from model.checkpoint import atomic_save
from service.api import create_app
from service.settings import load_settings
from service.wiring import ServiceError, build_service


# Both precisions: whichever one 'auto' would pick on this host, the other proves the setting was applied.
@pytest.mark.timeout(90)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_config_precision_and_torch_threads_reach_the_running_service(tmp_path: Path, precision: str) -> None:
    weights = tmp_path / "untrained.pt"
    atomic_save(untrained_predictor().weights_blob(), weights)
    before = torch.get_num_threads()
    threads = before + 1
    config = tmp_path / "ffp.yaml"
    config.write_text(f"weights: {weights}\ndata_dir: {tmp_path / 'data'}\ndevice: cpu\n"
                      f"precision: {precision}\ntorch_threads: {threads}\n")
    service = build_service(load_settings(config))
    with serve(create_app(service)) as srv:
        stats = httpx.get(f"{srv.url}/v1/stats", timeout=20).json()
    assert (stats["device"], stats["precision"], stats["torch_threads"]) == ("cpu", precision, threads)
    assert (tmp_path / "data" / "events.db").is_file()


@pytest.mark.timeout(30)
def test_unusable_weights_or_data_dir_raise_service_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="not found"):
        build_service(load_settings(None, weights=tmp_path / "none.pt"))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ServiceError, match="cannot open the event store"):
        build_service(load_settings(None, data_dir=not_a_dir), predictor=untrained_predictor())
