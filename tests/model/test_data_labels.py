import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import get_preset
from model.data import (
    DataError,
    WindowDataset,
    check_crop,
    count_frames,
    find_videos,
    load_video,
    random_crops,
    split_holdout,
)
from model.labels import find_labels, load_labels


@pytest.fixture
def labels_dir(shared_data: Callable[[str], Path]) -> Path:
    return shared_data("datasets/labels")


def ped2_test_index(ped2: Path) -> tuple[list[str], list[int]]:
    videos = find_videos(ped2, "testing")
    return [v.name for v in videos], [count_frames(v) for v in videos]


def test_ped2_layout_is_found(ped2: Path) -> None:
    train = find_videos(ped2, "training")
    test = find_videos(ped2, "testing")
    assert [v.name for v in train] == [f"{i:02d}" for i in range(1, 17)]
    assert len(test) == 12
    assert sum(count_frames(v) for v in train) == 2550
    assert sum(count_frames(v) for v in test) == 2010


def test_ped2_mat_and_json_labels_agree(ped2: Path) -> None:
    names, counts = ped2_test_index(ped2)
    mat = load_labels(ped2 / "ped2.mat", names, counts)
    js = load_labels(ped2 / "labels_frame_level.json", names, counts)
    assert all(np.array_equal(mat[n], js[n]) for n in names)
    assert sum(int(v.sum()) for v in mat.values()) == 1648
    assert find_labels(ped2) == ped2 / "labels_frame_level.json"


def test_avenue_mat_agrees_with_json(labels_dir: Path) -> None:
    js = load_labels(labels_dir / "avenue_frame_labels.json")
    names = sorted(js)
    counts = [len(js[n]) for n in names]
    assert len(names) == 21 and sum(counts) == 15324
    mat = load_labels(labels_dir / "avenue.mat", names, counts)
    agree = np.mean(np.concatenate([mat[n] == js[n] for n in names]))
    assert agree > 0.95  # .mat intervals vs labels derived from pixel masks


def test_shanghaitech_json_labels(labels_dir: Path) -> None:
    js = load_labels(labels_dir / "shanghaitech_frame_labels.json")
    assert len(js) == 107 and sum(len(v) for v in js.values()) == 40791
    assert "01_0014" in js


def test_npy_formats(tmp_path: Path, ped2: Path) -> None:
    names, counts = ped2_test_index(ped2)
    js = load_labels(ped2 / "labels_frame_level.json", names, counts)
    flat = np.concatenate([js[n] for n in names])
    np.save(tmp_path / "frame_labels_ped2.npy", flat)
    mnad = load_labels(tmp_path / "frame_labels_ped2.npy", names, counts)
    assert all(np.array_equal(mnad[n], js[n]) for n in names)
    mask_dir = tmp_path / "test_frame_mask"
    mask_dir.mkdir()
    for n in names:
        np.save(mask_dir / f"{n}.npy", js[n])
    sht = load_labels(mask_dir, names, counts)
    assert all(np.array_equal(sht[n], js[n]) for n in names)


def test_label_count_mismatch_is_an_error(tmp_path: Path, ped2: Path) -> None:
    names, counts = ped2_test_index(ped2)
    with pytest.raises(DataError, match="frames but"):
        load_labels(ped2 / "labels_frame_level.json", names, [c + 1 for c in counts])
    np.save(tmp_path / "short.npy", np.zeros(10))
    with pytest.raises(DataError, match="labels but the videos have"):
        load_labels(tmp_path / "short.npy", names, counts)
    (tmp_path / "l.json").write_text(json.dumps({"01": [0, 1]}))
    with pytest.raises(DataError, match="no labels for videos"):
        load_labels(tmp_path / "l.json", names, counts)


def test_missing_and_wrong_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        find_videos(tmp_path / "nope", "training")
    (tmp_path / "training").mkdir()
    with pytest.raises(DataError, match="no videos found"):
        find_videos(tmp_path, "training")


def test_video_files_and_windows(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clips" / "a.avi"
    path.parent.mkdir()
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(12):
        w.write(np.full((48, 64, 3), i * 10, np.uint8))
    w.release()
    videos = find_videos(tmp_path / "clips")
    assert [v.name for v in videos] == ["a"]
    cfg = get_preset("lite", num_frames=4)
    arr = load_video(videos[0], cfg)
    assert arr.shape == (12, 1, 128, 128) and arr.dtype == np.float32
    assert arr.min() >= -1.0 and arr.max() <= 1.0
    ds = WindowDataset([arr], cfg.num_frames)
    assert len(ds) == 12 - 4 and ds[0].shape == (5, 1, 128, 128)
    assert ds.nbytes == arr.nbytes
    before = ds[3].clone()
    assert ds.to(torch.device("cpu")) is ds and torch.equal(ds[3], before)  # (train moves it to a GPU)
    train, held = split_holdout(videos * 3, 1)
    assert len(train) == 2 and len(held) == 1


def test_frame_stride_windows() -> None:
    """A stride-s model sees frames s apart: training windows, clip windows and the rule agree."""
    from dataclasses import replace

    from model.clip import windows_from_frames
    from model.config import ModelConfig, window_rows

    frames = np.arange(20, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    cfg = replace(get_preset("lite"), num_frames=4, frame_stride=2)
    assert cfg.history == 8
    ds = WindowDataset([frames], cfg.num_frames, cfg.frame_stride)
    assert len(ds) == 20 - 8  # full windows only for training
    assert ds[0][:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8] and ds[11][:, 0, 0, 0].tolist() == [11, 13, 15, 17, 19]
    # Stride 1 is the old behaviour: k+1 consecutive frames, nothing repeated.
    assert window_rows(5, 4) == [0, 1, 2, 3, 4] and window_rows(9, 4, 1) == [4, 5, 6, 7, 8]
    # A clip's first k frames get no window whatever the stride; the next ones repeat the oldest frame.
    got = {i: w[:, 0, 0, 0].tolist() for i, w in windows_from_frames(list(frames), cfg) if w is not None}
    assert min(got) == cfg.num_frames
    assert got[4] == [0, 0, 0, 2, 4] and got[7] == [0, 1, 3, 5, 7] and got[8] == [0, 2, 4, 6, 8]
    assert got[19] == ds[11][:, 0, 0, 0].tolist()  # once the history is full, the training window exactly
    with pytest.raises(ValueError, match="more than 4 frames"):
        window_rows(4, 4, 2)
    with pytest.raises(ValueError, match="frame_stride"):
        replace(cfg, frame_stride=0)
    # Weights saved before the field existed load with stride 1.
    old = {k: v for k, v in get_preset("lite").to_dict().items() if k != "frame_stride"}
    assert ModelConfig.from_dict(old).frame_stride == 1


def test_random_crops_cut_every_frame_of_a_window_at_one_place() -> None:
    """A crop keeps a window's motion: the same rows and columns in all k+1 frames, anywhere in the frame."""
    h, w = 16, 24
    frame = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w)
    window = torch.stack([frame + 1000 * t for t in range(5)])  # (k+1, C, H, W), frame t offset by 1000 t
    gen = torch.Generator().manual_seed(0)
    corners = set()
    for _ in range(300):
        (c,) = random_crops([window], 8, gen)
        assert c.shape == (5, 1, 8, 8)
        top, left = divmod(int(c[0, 0, 0, 0]), w)
        assert torch.equal(c, window[..., top:top + 8, left:left + 8])
        corners.add((top, left))
    assert {t for t, _ in corners} == set(range(h - 8 + 1)) and {lf for _, lf in corners} == set(range(w - 8 + 1))
    lite = get_preset("lite")
    check_crop(64, lite)
    check_crop(128, lite)
    for bad in (4, 60, 136):  # below the pooling, not a multiple of it, larger than the frames
        with pytest.raises(ValueError, match="--crop"):
            check_crop(bad, lite)


def test_video_fps_is_the_declared_rate(tmp_path: Path) -> None:
    import cv2

    from model.data import video_fps

    vw = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for _ in range(3):
        vw.write(np.zeros((24, 32, 3), np.uint8))
    vw.release()
    assert video_fps(tmp_path / "v.avi") == 10.0
    assert video_fps(tmp_path) is None  # a folder of frames declares none
