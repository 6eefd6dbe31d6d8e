"""Weights files on disk: the format, atomic saving, safe loading and the sha256 manifest.

A weights file is a torch pickle of plain data (loaded with weights_only=True):
    {"format": "ffp-weights-v1", "model_config": {...}, "generator": state_dict,
     "flownet_config": {...} | None, "flownet": state_dict | None, "calibration": {...} | None,
     "score_config": {...}, "meta": {...}}
Shipped files are listed with their sha256 and preset in weights/manifest.json; loading a listed file
verifies both. Turning a blob into modules is `model.predictor`'s job.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
DEFAULT_WEIGHTS_NAME = "ffp-ped2-lite.pt"
WEIGHTS_FORMAT = "ffp-weights-v1"
CHECKPOINT_FORMAT = "ffp-checkpoint-v1"  # ffp train's last.pt / best.pt: a weights blob plus optimiser state


class WeightsError(RuntimeError):
    """A weights or checkpoint file is missing, corrupt, or made for something else."""


def weights_of(blob: Any) -> Any:
    """The weights blob of a training checkpoint, or the blob itself (a weights file, or not ours at all)."""
    return blob["weights"] if isinstance(blob, dict) and blob.get("format") == CHECKPOINT_FORMAT else blob


def default_weights_path() -> Path:
    return Path(os.environ.get("FFP_WEIGHTS", WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; weights are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def require_weights_file(path: Path, hint: str = "") -> None:
    """WeightsError unless `path` is a file: a folder is said to be one; `hint` follows "not found"."""
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}{hint}")


def safe_torch_load(path: Path) -> Any:
    path = Path(path)
    require_weights_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip errors, unpickling errors, truncated files
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise WeightsError(f"cannot read {path}: corrupt or not an ffp weights file ({type(e).__name__}: "
                           f"{first_line})") from e


def manifest_beside(path: Path) -> Path:
    """The manifest.json that may list `path` with its sha256: the one in the file's folder."""
    return Path(path).resolve().parent / "manifest.json"


def read_manifest(manifest: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    if not manifest.is_file():
        return {}
    try:
        return dict(json.loads(manifest.read_text()).get("files", {}))
    except (OSError, ValueError, AttributeError, TypeError) as e:  # not JSON, or not the manifest's shape
        raise WeightsError(f"cannot read the manifest {manifest}: {e}") from None


def verify_checksum(path: Path, manifest: Path | None = None) -> dict[str, Any] | None:
    """If the file is listed in the manifest beside it, check its sha256; returns its manifest entry."""
    path = Path(path)
    manifest = manifest or manifest_beside(path)
    entry = read_manifest(manifest).get(path.name) if path.resolve().parent == manifest.resolve().parent else None
    if entry is None:
        return None
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise WeightsError(f"checksum mismatch for {path}: expected sha256 {entry['sha256']}, got {actual}; "
                           "the file is corrupt or was replaced (re-fetch it with git, or re-train)")
    return dict(entry)


def record_in_manifest(path: Path, preset: str, extra: dict[str, Any] | None = None,
                       manifest: Path | None = None) -> dict[str, Any]:
    manifest = manifest or manifest_beside(path)
    files = read_manifest(manifest)
    entry = {"sha256": sha256_file(path), "preset": preset, "bytes": path.stat().st_size, **(extra or {})}
    files[path.name] = entry
    manifest.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return entry


def half_generator(blob: dict[str, Any]) -> dict[str, Any]:
    """The weights blob with its generator stored in float16 (half the bytes); loading casts back to fp32."""
    generator = {k: v.half() if v.is_floating_point() else v for k, v in blob["generator"].items()}
    return {**blob, "generator": generator, "meta": {**blob.get("meta", {}), "stored_dtype": "float16"}}

