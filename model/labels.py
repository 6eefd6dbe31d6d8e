"""Frame-level anomaly labels in the formats found in the wild, as {video name: int8 array (0/1 per frame)}.

- Liu et al. `.mat` (ped1/ped2/avenue): struct field `gt`, a cell per video of 2xN 1-based inclusive
  [start; end] intervals; or a `.mat` with one variable per video holding one 0/1 per frame.
- per-frame JSON: {"01": [0, 1, ...], ...}
- ShanghaiTech: a folder `test_frame_mask/` of `<video>.npy`, one 0/1 per frame.
- MNAD: one flat `frame_labels_<dataset>.npy` over all test frames, in video order (needs the counts).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import DataError

Labels = dict[str, np.ndarray]


def _from_mat(path: Path, names: list[str], counts: list[int]) -> Labels:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=False)
    except Exception as e:
        raise DataError(f"cannot read MATLAB labels {path}: {e}") from e
    if "gt" not in mat:
        # The other common variant: one variable per video holding one 0/1 per frame.
        per_frame = {k: np.asarray(v).reshape(-1).astype(np.int8) for k, v in mat.items() if not k.startswith("__")}
        if per_frame and all(set(np.unique(v)) <= {0, 1} for v in per_frame.values()):
            return per_frame
        raise DataError(f"{path} has no 'gt' field (Liu et al. label format) nor per-video 0/1 arrays")
    cells = np.asarray(mat["gt"]).reshape(-1)
    if names and len(cells) != len(names):
        raise DataError(f"{path} labels {len(cells)} videos but the dataset has {len(names)}")
    out: Labels = {}
    for i, cell in enumerate(cells):
        name = names[i] if names else f"{i + 1:02d}"
        intervals = np.asarray(cell, dtype=np.int64).reshape(2, -1) if np.size(cell) else np.zeros((2, 0), np.int64)
        n = counts[i] if counts else int(intervals.max(initial=0))
        lab = np.zeros(n, np.int8)
        for start, end in intervals.T:
            if start < 1 or end < start or (counts and end > n):
                raise DataError(f"{path}: video {name} has interval [{start}, {end}] outside 1..{n}")
            lab[start - 1:end] = 1
        out[name] = lab
    return out


def _binary(path: Path, video: str, values: object) -> np.ndarray:
    """One video's labels as int8 0/1, one per frame; anything else is an error that names the file and video."""
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged nested lists
        arr = np.asarray([None])
    if arr.ndim != 1 or arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise DataError(f"{path}: video {video}: expected a flat list of 0/1, one per frame")
    return arr.astype(np.int8)


def _from_json(path: Path) -> Labels:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read JSON labels {path}: {e}") from e
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected {{video: [0/1 per frame]}}")
    return {str(k): _binary(path, str(k), v) for k, v in raw.items()}


def _from_npy_dir(path: Path) -> Labels:
    files = sorted(path.glob("*.npy"))
    if not files:
        raise DataError(f"no .npy label files in {path}")
    return {f.stem: _binary(f, f.stem, np.load(f, allow_pickle=False).reshape(-1)) for f in files}


def _from_flat_npy(path: Path, names: list[str], counts: list[int]) -> Labels:
    flat = _binary(path, "(all)", np.load(path, allow_pickle=False).reshape(-1))
    if not counts:
        raise DataError(f"{path} is a flat label array: the video frame counts are needed to split it")
    if len(flat) != sum(counts):
        raise DataError(f"{path} has {len(flat)} labels but the videos have {sum(counts)} frames")
    out: Labels = {}
    pos = 0
    for name, n in zip(names, counts, strict=False):
        out[name] = flat[pos:pos + n]
        pos += n
    return out


def load_labels(path: str | Path, names: list[str] | None = None, counts: list[int] | None = None) -> Labels:
    """Read labels from `path`; with names and counts, check that every video has one label per frame."""
    path = Path(path)
    names, counts = list(names or []), list(counts or [])
    if not path.exists():
        raise DataError(f"label file not found: {path}")
    if path.is_dir():
        labels = _from_npy_dir(path)
    elif path.suffix == ".mat":
        labels = _from_mat(path, names, counts)
    elif path.suffix == ".json":
        labels = _from_json(path)
    elif path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        labels = (_from_flat_npy(path, names, counts) if arr.ndim == 1 and names
                  else {path.stem: _binary(path, path.stem, arr.reshape(-1))})
    else:
        raise DataError(f"unknown label format: {path} (use .mat, .json, .npy or a folder of .npy)")
    if names:
        missing = [n for n in names if n not in labels]
        if missing:
            raise DataError(f"{path} has no labels for videos {missing}")
        for n, c in zip(names, counts, strict=False):
            if len(labels[n]) != c:
                raise DataError(f"{path}: video {n} has {c} frames but {len(labels[n])} labels")
        labels = {n: labels[n] for n in names}
    return labels


def find_labels(root: str | Path) -> Path | None:
    """Look for labels next to a dataset: per-frame JSON, Liu .mat, test_frame_mask/, frame_labels_*.npy."""
    root = Path(root)
    patterns = ["labels_frame_level.json", "*frame_labels*.json", "testing/test_frame_mask", "test_frame_mask",
                "*.mat", "frame_labels_*.npy"]
    for pat in patterns:
        hits = sorted(root.glob(pat))
        if hits:
            return hits[0]
    return None
