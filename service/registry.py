"""ModelRegistry: each camera's own models on disk, versioned and verified.

    data_dir/models/{camera}/vNNNN.pt        a copy of a weights file, written once (atomically), never changed
    data_dir/models/{camera}/registry.json   {"active": "vNNNN" | null, "versions": [entry, ...]}

registry.json is replaced atomically and only after the version's file is in place, so a reader (another thread,
another process) always sees a whole registry whose versions all have their file. Every load checks the file's
sha256 against its entry: a file changed on disk is refused (WeightsError), never scored with.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model import WEIGHTS_FORMAT, Predictor, WeightsError, load_predictor, safe_torch_load, sha256_file, weights_of

from . import tombstones
from .settings import SLUG

REGISTRY_FILE = "registry.json"
VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class ModelEntry:
    """One version of a camera's model. The learning facts come from the weights' meta when it records them."""

    version: str  # "v0001", "v0002", ... in the order they were added
    file: str  # the weights file's name in the camera's folder
    sha256: str
    bytes: int
    created: float  # Unix time it was added
    preset: str
    footage: dict[str, Any] | None  # what it learnt from, e.g. {"span_s": ..., "frames": ...}
    heldout_psnr: float | None  # prediction PSNR on the held-out tail of the footage
    calibration: dict[str, Any] | None  # summary: frames, source, anomaly mean and std, z quantiles
    recipe: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fps(self) -> float | None:
        """The frame rate of the footage it learnt from (None: not recorded, e.g. a model trained elsewhere)."""
        fps = (self.footage or {}).get("fps")
        return float(fps) if isinstance(fps, int | float) and fps > 0 else None

    def rate_mismatch(self, fps: float) -> str | None:
        """Why it cannot score a camera at `fps` (None: it can). A model learns how far things move between two
        frames: at another rate every moving thing moves too far or too little, and looks anomalous."""
        learnt = self.fps
        if learnt is None or abs(learnt - fps) < 1e-6:
            return None
        return (f"model {self.version} learnt motion at {learnt:g} fps and the camera runs at {fps:g} fps: relearn "
                f"at this rate, or set fps back to {learnt:g}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelEntry:
        known: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__}
        known["footage"], known["calibration"] = _without_paths(known["footage"], known["calibration"])
        return cls(**known)


def _without_paths(footage: Any, calibration: Any) -> tuple[Any, Any]:
    """An entry's footage and calibration summaries without the server's folders (what the API shows): the
    footage's `root`, and the same folder named in the calibration's source."""
    if not isinstance(footage, dict) or "root" not in footage:
        return footage, calibration
    root = str(footage["root"])
    if isinstance(calibration, dict) and isinstance(calibration.get("source"), str) and root:
        calibration = {**calibration, "source": calibration["source"].replace(root, "the footage")}
    return {k: v for k, v in footage.items() if k != "root"}, calibration


def _is_registry(data: Any) -> bool:
    """The shape `_write` gives the file (a file edited by hand may have another)."""
    if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
        return False
    if data.get("active") is not None and not isinstance(data["active"], str):
        return False
    return all(isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("version", "file", "sha256"))
               and VERSION.match(v["version"]) is not None and v["file"] == Path(v["file"]).name
               for v in data["versions"])


def summarize(blob: dict[str, Any]) -> dict[str, Any]:
    """The entry fields that a weights blob tells: preset, footage, held-out PSNR, calibration, recipe."""
    meta = blob.get("meta") or {}
    footage = meta.get("footage")
    if not isinstance(footage, dict):
        flat = {k.removeprefix("footage_"): v for k, v in meta.items() if k.startswith("footage_")}
        footage = flat or None
    cal = blob.get("calibration")
    summary = None if not cal else {
        "frames": cal.get("frames"), "source": cal.get("source"),
        "anomaly_mean": cal.get("mean", {}).get("anomaly"), "anomaly_std": cal.get("std", {}).get("anomaly"),
        "quantiles": cal.get("quantiles", {})}
    footage, summary = _without_paths(footage, summary)
    psnr = meta.get("heldout_psnr")
    recipe = meta.get("recipe")
    return {"preset": str(blob.get("model_config", {}).get("name")), "footage": footage,
            "heldout_psnr": None if psnr is None else float(psnr), "calibration": summary,
            "recipe": None if recipe is None else str(recipe)}


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """write(tmp) in the same folder, fsync, rename over `path`: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Per-camera versions under `data_dir/models/`. Thread-safe; writers in one process at a time."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(data_dir) / "models"
        self._clock = clock
        self._lock = threading.Lock()  # add / activate / remove: read-modify-write of registry.json

    def folder(self, camera: str) -> Path:
        if not SLUG.match(camera):  # ids become paths: never let one climb out of models/
            raise ValueError(f"camera id {camera!r} must be a slug")
        return self.root / camera

    def _read(self, camera: str) -> dict[str, Any]:
        path = self.folder(camera) / REGISTRY_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {"active": None, "versions": []}
        except (OSError, ValueError) as e:
            raise WeightsError(f"cannot read {path}: {e}") from e
        if not _is_registry(data):
            raise WeightsError(f"cannot read {path}: not a model registry (an object with 'active' and a list of "
                               "'versions', each with its 'version' vNNNN, a 'file' in the folder and 'sha256')")
        return data  # type: ignore[no-any-return]

    def _write(self, camera: str, data: dict[str, Any]) -> None:
        path = self.folder(camera) / REGISTRY_FILE
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))

    # -- reading ------------------------------------------------------------------------------------------

    def versions(self, camera: str) -> list[ModelEntry]:
        """The camera's versions, oldest first (none for an unknown camera)."""
        return [ModelEntry.from_dict(v) for v in self._read(camera)["versions"]]

    def active(self, camera: str) -> ModelEntry | None:
        data = self._read(camera)
        return next((ModelEntry.from_dict(v) for v in data["versions"] if v["version"] == data["active"]), None)

    def entry(self, camera: str, version: str | None = None) -> ModelEntry:
        """A version's entry (default: the active one); KeyError when there is no such version."""
        data = self._read(camera)
        version = version or data["active"]
        for v in data["versions"]:
            if v["version"] == version:
                return ModelEntry.from_dict(v)
        raise KeyError(f"camera {camera!r} has no model version {version!r}" if version
                       else f"camera {camera!r} has no active model")

    def path(self, camera: str, entry: ModelEntry) -> Path:
        return self.folder(camera) / entry.file

    def load(self, camera: str, version: str | None = None, *, device: str = "auto",
             precision: str | None = None) -> Predictor:
        """The version's predictor (default: the active one). The file's sha256 must match its entry:
        WeightsError otherwise (a file changed or damaged on disk). KeyError for an unknown version."""
        entry = self.entry(camera, version)
        path = self.path(camera, entry)
        if not path.is_file():
            raise WeightsError(f"model {camera}/{entry.version}: file {path.name} is missing")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise WeightsError(f"model {camera}/{entry.version}: sha256 mismatch (registered {entry.sha256[:12]}, "
                               f"file {actual[:12]}): the file was changed or damaged on disk")
        return load_predictor(path, device=device, precision=precision)

    # -- writing ------------------------------------------------------------------------------------------

    def add(self, camera: str, weights_file: Path) -> ModelEntry:
        """Copy a weights file in as the camera's next version (not activated). WeightsError when it is not an
        ffp weights file."""
        blob = weights_of(safe_torch_load(Path(weights_file)))
        if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
            raise WeightsError(f"{weights_file} is not an ffp weights file")
        folder = self.folder(camera)
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            data = self._read(camera)
            used = [int(m.group(1)) for p in folder.glob("v*.pt") if (m := VERSION.match(p.stem))]
            used += [int(VERSION.match(v["version"]).group(1)) for v in data["versions"]]  # type: ignore[union-attr]
            version = f"v{max(used, default=0) + 1:04d}"
            target = folder / f"{version}.pt"
            write_atomic(target, lambda tmp: shutil.copyfile(weights_file, tmp))
            entry = ModelEntry(version=version, file=target.name, sha256=sha256_file(target),
                               bytes=target.stat().st_size, created=self._clock(), **summarize(blob))
            data["versions"].append(entry.to_dict())
            self._write(camera, data)
        return entry

    def activate(self, camera: str, version: str | None) -> ModelEntry | None:
        """Make `version` the camera's active model (rolls back or forward); None: no model of its own.
        KeyError for an unknown version."""
        with self._lock:
            data = self._read(camera)
            entry = None if version is None else self.entry(camera, version)
            if data["active"] != version:
                data["active"] = version
                self.folder(camera).mkdir(parents=True, exist_ok=True)
                self._write(camera, data)
        return entry

    def entomb_camera(self, camera: str) -> Path | None:
        """Move the camera's models aside (service.tombstones), for the caller to remove; None for a camera without
        any. From here on the camera has none, and a reader saw the whole registry or sees none, never half a
        deleted folder."""
        with self._lock:
            return tombstones.entomb(self.folder(camera))
