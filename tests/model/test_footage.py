"""Recorded footage: stored as preprocess_frame's uint8 image, segments, caps, reopening, the static-stream check,
windows that never span two segments and the held-out tail."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import get_preset
from model.data import (
    UINT8_TO_FLOAT,
    DataError,
    WindowDataset,
    normalize_image,
    preprocess_frame,
    resize_frame,
)
from model.footage import Footage, FootageWriter, as_model_layout, min_footage_frames, motion_check
from tests.model.synthetic import scene_frames

CONFIG = get_preset("lite", num_frames=4, image_size=(32, 32))
BIG = 1 << 30


def moving(n: int, offset: int = 0) -> list[np.ndarray]:
    return scene_frames(n, size=64, offset=offset)


def test_stored_frames_are_exactly_what_preprocess_frame_scores() -> None:
    rng = np.random.default_rng(0)
    for config in (CONFIG, get_preset("paper", image_size=(32, 32))):
        frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        img = resize_frame(frame, config)
        assert img.dtype == np.uint8
        assert np.array_equal(normalize_image(img), preprocess_frame(frame, config))
        # windows of stored uint8 frames become the same floats, bit for bit, through the 256-level table
        uint8_video = as_model_layout(np.stack([img] * 5))
        float_video = np.stack([preprocess_frame(frame, config)] * 5)
        assert torch.equal(WindowDataset([uint8_video], 4)[0], WindowDataset([float_video], 4)[0])
    every_level = np.arange(256, dtype=np.uint8)[None]
    assert torch.equal(UINT8_TO_FLOAT, torch.from_numpy(normalize_image(every_level)[0, 0]))


def test_writer_records_segments_atomically_and_reopening_continues(tmp_path: Path) -> None:
    root = tmp_path / "footage"
    writer = FootageWriter(root, CONFIG, fps=10, max_frames=1000, max_bytes=BIG, chunk_frames=8)
    for i, f in enumerate(moving(20)):
        assert writer.append(f, i / 10)
    writer.new_segment("outage")
    for i, f in enumerate(moving(5, offset=40)):
        assert writer.append(f, 10 + i / 10)
    assert writer.frames == 25
    writer.close()
    segs = sorted(root.iterdir())
    assert [s.name for s in segs] == ["seg-00001", "seg-00002"]
    assert not [p for p in root.rglob(".*")]  # no temp file left behind
    meta = json.loads((segs[0] / "meta.json").read_text())
    assert meta == {"fps": 10.0, "frames": 20, "first_ts": 0.0, "last_ts": 1.9, "closed": True, "reason": "start"}
    assert json.loads((segs[1] / "meta.json").read_text())["reason"] == "outage"
    footage = Footage(root)
    stored = footage.segments()
    assert [len(s) for s in stored] == [20, 5] and footage.frames == 25
    assert stored[0].dtype == np.uint8 and stored[0].shape[1:] == (32, 32)
    assert np.array_equal(stored[0][3], resize_frame(moving(20)[3], CONFIG))
    assert footage.span_s == pytest.approx(1.9 + 0.4) and footage.fps == 10.0
    assert footage.bytes == writer.bytes

    again = FootageWriter(root, CONFIG, fps=10, max_frames=30, max_bytes=BIG, chunk_frames=8)
    assert again.frames == 25 and again.static_reason is None
    for i, f in enumerate(moving(10)):
        if not again.append(f, 20 + i / 10):
            break
    assert i == 5 and again.frames == 30 and "frame cap reached" in (again.full_reason or "")
    again.close()
    assert [len(s) for s in Footage(root).segments()] == [20, 5, 5]
    assert json.loads((root / "seg-00003" / "meta.json").read_text())["reason"] == "reopened"


def test_disk_cap_stops_recording_and_leaves_whole_chunks(tmp_path: Path) -> None:
    root = tmp_path / "footage"
    frame_bytes = 32 * 32
    cap = 128 + 10 * frame_bytes + 128 + 3 * frame_bytes  # a full chunk of 10, and room for 3 more
    writer = FootageWriter(root, CONFIG, fps=10, max_frames=1000, max_bytes=cap, chunk_frames=10)
    kept = [writer.append(f, i / 10) for i, f in enumerate(moving(30))]
    assert kept == [True] * 13 + [False] * 17
    assert "disk cap reached" in (writer.full_reason or "") and writer.bytes <= cap
    writer.close()
    footage = Footage(root)
    assert footage.frames == 13 and footage.bytes <= cap
    assert [len(s) for s in footage.segments()] == [13]  # every chunk loads whole


@pytest.mark.parametrize(("kind", "reason"), [("constant", "uniform"), ("black", "uniform"),
                                              ("static", "frozen"), ("moving", None)])
def test_frozen_black_or_uniform_streams_are_refused(tmp_path: Path, kind: str, reason: str | None) -> None:
    scene = moving(40)
    frames = {"constant": [np.full((64, 64), 128, np.uint8)] * 40, "black": [np.zeros((64, 64, 3), np.uint8)] * 40,
              "static": [scene[0]] * 40, "moving": scene}[kind]
    writer = FootageWriter(tmp_path / kind, CONFIG, fps=10, max_frames=1000, max_bytes=BIG)
    assert writer.static_reason is None  # nothing to judge yet
    for i, f in enumerate(frames):
        writer.append(f, i / 10)
    writer.close()
    for found in (writer.static_reason, motion_check(Footage(tmp_path / kind).segments())):
        assert (found is None) if reason is None else (reason in (found or "")), found


def test_training_windows_never_span_two_segments(tmp_path: Path) -> None:
    """Two segments whose frames carry their segment in the pixel values: every window stays in one."""
    root = tmp_path / "footage"
    writer = FootageWriter(root, CONFIG, fps=10, max_frames=1000, max_bytes=BIG, chunk_frames=7)
    for i in range(12):
        writer.append(np.full((32, 32), 10 + i, np.uint8), i / 10)
    writer.new_segment("history reset")
    for i in range(9):
        writer.append(np.full((32, 32), 200 + i, np.uint8), 5 + i / 10)
    writer.close()
    videos = [as_model_layout(s) for s in Footage(root).segments()]
    ds = WindowDataset(videos, CONFIG.num_frames)
    assert len(ds) == (12 - 4) + (9 - 4)
    first = [int((float(ds[i][0, 0, 0, 0]) + 1) * 127.5 + 0.5) for i in range(len(ds))]
    for i in range(len(ds)):
        levels = ((ds[i][:, 0, 0, 0] + 1) * 127.5).round().int()
        assert torch.equal(levels, torch.arange(first[i], first[i] + 5, dtype=levels.dtype)), levels
        assert bool((levels < 100).all()) or bool((levels >= 200).all())


def test_holdout_is_the_tail_and_big_enough_to_calibrate(tmp_path: Path) -> None:
    root = tmp_path / "footage"
    writer = FootageWriter(root, CONFIG, fps=10, max_frames=1000, max_bytes=BIG)
    for i, f in enumerate(moving(100)):
        writer.append(f, i / 10)
    writer.new_segment("outage")
    for i, f in enumerate(moving(100, offset=7)):
        writer.append(f, 20 + i / 10)
    writer.close()
    footage = Footage(root)
    train, held = footage.split(0.15, history=4, min_holdout_windows=10)
    assert [p.name for p in train] == ["seg-00001", "seg-00002[:70]"]
    assert [p.name for p in held] == ["seg-00002[70:]"]
    assert np.array_equal(held[0].frames, footage.segments()[1][70:])
    # a small fraction grows to give the minimum of held-out windows
    train, held = footage.split(0.01, history=4, min_holdout_windows=40)
    assert [p.name for p in held] == ["seg-00002[56:]"] and len(held[0].frames) - 4 == 40
    with pytest.raises(DataError, match="too short"):
        footage.split(0.15, history=4, min_holdout_windows=500)


@pytest.mark.parametrize("history", [2, 4, 8])
def test_min_footage_frames_is_the_fewest_that_split(tmp_path: Path, history: int) -> None:
    need = min_footage_frames(history, min_holdout_windows=10)
    for n, ok in ((need, True), (need - 1, False)):
        root = tmp_path / f"footage-{history}-{n}"
        writer = FootageWriter(root, CONFIG, fps=10, max_frames=1000, max_bytes=BIG)
        for i, f in enumerate(moving(n)):
            writer.append(f, i / 10)
        writer.close()
        if ok:
            train, held = Footage(root).split(0.15, history=history, min_holdout_windows=10)
            assert train and held
        else:
            with pytest.raises(DataError, match="too short"):
                Footage(root).split(0.15, history=history, min_holdout_windows=10)
