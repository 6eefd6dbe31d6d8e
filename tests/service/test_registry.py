"""ModelRegistry on real files: versions, sha256 verified on load, activate (roll back / forward), removal, and a
reader that never sees a half-written registry while another thread adds versions."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from model import METRICS, WEIGHTS_FORMAT, Calibration, WeightsError
from model.checkpoint import atomic_save
from model.config import ScoreConfig, get_preset
from model.unet import Generator
from service import tombstones
from service.registry import ModelEntry, ModelRegistry, summarize

pytestmark = pytest.mark.timeout(60)


def weights_file(path: Path, seed: int = 0, meta: dict[str, Any] | None = None, *, num_frames: int = 4,
                 calibrated: bool = True) -> Path:
    """An untrained lite weights file (a few hundred kB) with the given meta."""
    torch.manual_seed(seed)
    cfg = get_preset("lite", num_frames=num_frames)
    mean, std = {**dict.fromkeys(METRICS, 0.0), "anomaly": -30.0}, {**dict.fromkeys(METRICS, 1.0), "anomaly": 2.0}
    cal = Calibration(mean, std, {"p50": 0.0}, 100, "tests: holdout") if calibrated else None
    atomic_save({"format": WEIGHTS_FORMAT, "model_config": cfg.to_dict(), "generator": Generator(cfg).state_dict(),
                 "flownet_config": None, "flownet": None, "calibration": None if cal is None else cal.to_dict(),
                 "score_config": ScoreConfig().to_dict(), "meta": meta or {}}, path)
    return path


def test_add_versions_activate_and_entries_from_meta(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "data", clock=lambda: 1234.5)
    meta = {"footage": {"span_s": 600.0, "frames": 6000}, "heldout_psnr": 31.25, "recipe": "camera-lite"}
    e1 = reg.add("cam-a", weights_file(tmp_path / "final.pt", 0, meta))
    e2 = reg.add("cam-a", weights_file(tmp_path / "other.pt", 1))
    assert (e1.version, e2.version) == ("v0001", "v0002")
    assert e1.file == "v0001.pt" and (tmp_path / "data/models/cam-a/v0001.pt").is_file()
    assert e1.created == 1234.5 and e1.preset == "lite" and e1.recipe == "camera-lite"
    assert e1.footage == {"span_s": 600.0, "frames": 6000} and e1.heldout_psnr == 31.25
    assert e1.calibration is not None and e1.calibration["anomaly_mean"] == -30.0
    assert e1.calibration["frames"] == 100
    assert e2.footage is None and e2.heldout_psnr is None and e1.sha256 != e2.sha256
    assert [e.version for e in reg.versions("cam-a")] == ["v0001", "v0002"]
    assert reg.active("cam-a") is None  # adding does not activate
    on_disk = json.loads((tmp_path / "data/models/cam-a/registry.json").read_text())
    assert on_disk["active"] is None and len(on_disk["versions"]) == 2

    assert reg.activate("cam-a", "v0002") == e2
    assert reg.active("cam-a") == e2
    reg.activate("cam-a", "v0001")  # roll back
    assert reg.active("cam-a") == e1
    p = reg.load("cam-a", precision="fp32")
    assert p.path == tmp_path / "data/models/cam-a/v0001.pt" and p.num_frames == 4
    assert p.calibration is not None and p.calibration.mean["anomaly"] == -30.0
    with pytest.raises(KeyError, match="v0009"):
        reg.activate("cam-a", "v0009")
    assert reg.active("cam-a") == e1
    reg.activate("cam-a", None)
    assert reg.active("cam-a") is None
    with pytest.raises(KeyError, match="no active model"):
        reg.load("cam-a")
    # Other cameras are independent; unknown ones have nothing.
    assert reg.versions("cam-b") == [] and reg.active("cam-b") is None


def test_flat_footage_meta_and_no_calibration(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    e = reg.add("c", weights_file(tmp_path / "w.pt", meta={"footage_span_s": 60.0, "footage_frames": 600},
                                  calibrated=False))
    assert e.footage == {"span_s": 60.0, "frames": 600} and e.calibration is None


def test_tampered_file_is_refused_on_load(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    e = reg.add("c", weights_file(tmp_path / "w.pt"))
    stored = tmp_path / "models/c" / e.file
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensors: torch would load it without complaint
    stored.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        reg.load("c", e.version)
    stored.unlink()
    with pytest.raises(WeightsError, match="missing"):
        reg.load("c", e.version)


def test_refuses_a_file_that_is_not_ffp_weights_and_bad_ids(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(WeightsError, match="not an ffp weights file"):
        reg.add("c", bad)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(WeightsError):
        reg.add("c", tmp_path / "junk.pt")
    assert reg.versions("c") == []
    with pytest.raises(ValueError, match="slug"):
        reg.versions("../etc")


def test_version_numbers_are_never_reused(tmp_path: Path) -> None:
    """A file left by a crash between copy and registry write keeps its number taken."""
    reg = ModelRegistry(tmp_path)
    w = weights_file(tmp_path / "w.pt")
    reg.add("c", w)
    (tmp_path / "models/c/v0002.pt").write_bytes(b"orphan")
    assert reg.add("c", w).version == "v0003"


def test_remove_camera(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    w = weights_file(tmp_path / "w.pt")
    reg.add("a", w)
    reg.add("b", w)
    reg.activate("a", "v0001")
    tombstones.remove([reg.entomb_camera("a")])
    assert reg.versions("a") == [] and reg.active("a") is None and not (tmp_path / "models/a").exists()
    assert [e.version for e in reg.versions("b")] == ["v0001"]
    assert reg.entomb_camera("a") is None  # nothing left: no error
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["b"]


def test_concurrent_reader_sees_whole_registries(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    w = weights_file(tmp_path / "w.pt")
    reader = ModelRegistry(tmp_path)  # another instance: as another thread or process would read it
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            try:
                versions = reader.versions("c")
                for e in versions:  # every listed version has its whole file
                    assert (tmp_path / "models/c" / e.file).stat().st_size == e.bytes
                active = reader.active("c")
                # a version activated after this listing was read is newer than all of it (or the listing was
                # read before the first version existed)
                assert active is None or active.version in {e.version for e in versions} or \
                    not versions or active.version > versions[-1].version
                seen.append(len(versions))
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)
                return

    t = threading.Thread(target=read)
    t.start()
    try:
        for _ in range(12):
            e = reg.add("c", w)
            reg.activate("c", e.version)
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors[0]
    assert seen and seen == sorted(seen)  # never went backwards
    assert len(reg.versions("c")) == 12 and reg.active("c") == reg.versions("c")[-1]


def test_entries_do_not_show_the_servers_folders(tmp_path: Path) -> None:
    root = "/srv/ffp/data/cameras/gate/footage"
    blob = {"model_config": {"name": "lite"}, "meta": {"footage": {"root": root, "frames": 600, "fps": 10.0}},
            "calibration": {"frames": 90, "source": f"{root} held-out [2]", "mean": {}, "std": {}}}
    summary = summarize(blob)
    assert summary["footage"] == {"frames": 600, "fps": 10.0}
    assert summary["calibration"]["source"] == "the footage held-out [2]"
    # An entry written with the folder (an older registry file) reads without it.
    entry = ModelEntry.from_dict({"version": "v0001", "file": "v0001.pt", "sha256": "0" * 64, "bytes": 1,
                                  "created": 0.0, "preset": "lite", "footage": blob["meta"]["footage"],
                                  "calibration": {"source": f"{root} held-out [2]"}})
    assert entry.footage == {"frames": 600, "fps": 10.0} and entry.fps == 10.0
    assert entry.calibration == {"source": "the footage held-out [2]"}
