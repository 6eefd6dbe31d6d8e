from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from model import Calibration, Predictor, score_frames
from model.cli import main as ffp
from service.api.schemas import EventPublic, FrameScore
from service.clips import UnsupportedContainer, sniff_container
from service.pipeline import ClipError, Pipeline
from service.settings import AlertSettings, Settings
from service.store import EventStore

pytestmark = pytest.mark.timeout(30)


def pinwheelish(i: int) -> np.ndarray:
    img = np.full((120, 160, 3), 90, np.uint8)
    img[40:80, 20 + i:60 + i] = 200  # a block drifting one pixel per frame: small, steady change
    return img


@pytest.fixture(scope="module")
def clip_predictor(make_predictor: Callable[[Calibration | None], Predictor]) -> Predictor:
    """Calibrated on the drifting block, the normal picture of these clips."""
    p = make_predictor(None)
    metrics = [s.metrics for s in score_frames(p, [pinwheelish(i) for i in range(30)]) if s.metrics]
    cal = Calibration.from_scores({k: np.array([m[k] for m in metrics]) for k in metrics[0] if k != "score"},
                                  source="tests: drifting block")
    return p.with_calibration(cal)


@pytest.fixture
def pipeline(tmp_path: Path, clip_predictor: Predictor) -> Pipeline:
    store = EventStore(":memory:")
    return Pipeline(Settings(data_dir=tmp_path, max_clip_seconds=5), clip_predictor, store)


def test_score_clip_frames_and_events(tmp_path: Path, pipeline: Pipeline,
                                      write_video: Callable[..., Path]) -> None:
    rng = np.random.default_rng(0)
    frames = [pinwheelish(i) for i in range(20)] + [rng.integers(0, 255, (120, 160, 3), np.uint8)
                                                    for _ in range(10)] + [pinwheelish(i) for i in range(15)]
    clip = write_video(tmp_path / "c.avi", frames, 10.0)
    alerts = AlertSettings(on_threshold=4, off_threshold=2.5, min_duration_s=0.2, hold_s=0.3, cooldown_s=1)
    res = pipeline.score_clip(clip, alerts=alerts)
    assert res.fps == 10.0 and len(res.frames) == len(frames)
    k = pipeline.predictor.num_frames
    assert all(f["score"] is None for f in res.frames[:k])
    assert res.frames[k]["time"] == pytest.approx(k / 10) and res.frames[k]["psnr"] is not None
    assert all(set(f) == set(FrameScore.model_fields) for f in res.frames)  # every metric, first k frames too
    (ev,) = res.events
    # the live events' fields (EventPublic's, images aside), times in seconds from the clip's start
    assert set(ev) | {"snapshot_url", "heatmap_url"} == set(EventPublic.model_fields) and ev["camera_id"] == "clip"
    assert 2.0 <= ev["start_ts"] <= 2.4 and ev["end_ts"] is not None and ev["end_ts"] <= 3.6
    assert ev["peak_score"] > 4 and ev["start_ts"] <= ev["peak_ts"] <= ev["end_ts"]
    # the peak's images: the decoded frame at the peak's time (MJPG is lossy) and its heatmap
    peak = res.peaks[ev["id"]]
    assert peak.time == pytest.approx(ev["peak_ts"]) and peak.frame.shape == (120, 160, 3)
    assert np.abs(peak.frame.astype(int) - frames[round(peak.time * 10)]).mean() < 10


    # `ffp score` writes the same shape, its events raised by the same alert engine with the same settings
    weights, settings = tmp_path / "w.pt", tmp_path / "alerts.yaml"
    torch.save(pipeline.predictor.weights_blob(), weights)
    settings.write_text(yaml.safe_dump({"alerts": alerts.model_dump()}))
    out = tmp_path / "scores.json"
    before = torch.get_num_threads()
    try:
        ffp(["score", str(clip), "--weights", str(weights), "--alerts", str(settings), "--precision",
             pipeline.predictor.precision, "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    cli = json.loads(out.read_text())
    assert cli["fps"] == res.fps and [f["time"] for f in cli["frames"]] == [f["time"] for f in res.frames]
    assert {"index", "time", "score", "smoothed"} <= set(cli["frames"][k])
    (cli_ev,) = cli["events"]
    assert set(cli_ev) == set(ev) and cli_ev["camera_id"] == "clip"
    for key in ("start_ts", "peak_ts", "end_ts"):  # the same frames (scores may differ in the last bits)
        assert cli_ev[key] == pytest.approx(ev[key], abs=0.11), key
    assert peak.heatmap.ndim == 2 and peak.heatmap.max() > 0


def test_clip_errors(tmp_path: Path, pipeline: Pipeline, write_video: Callable[..., Path]) -> None:
    cases = {"empty.mp4": b"", "playlist.mp4": b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
             "junk.mp4": b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ClipError):
            pipeline.score_clip(tmp_path / name)
    long_clip = write_video(tmp_path / "long.avi", [pinwheelish(i % 40) for i in range(60)], 10.0)  # 6 s > 5 s
    with pytest.raises(ClipError, match="longer than 5 s"):
        pipeline.score_clip(long_clip)
    short = write_video(tmp_path / "short.avi", [pinwheelish(i) for i in range(3)], 10.0)
    with pytest.raises(ClipError, match="more than 4 frames"):
        pipeline.score_clip(short)


def test_one_container_sniffer_for_clips(tmp_path: Path, pipeline: Pipeline,
                                         write_video: Callable[..., Path]) -> None:
    avi = write_video(tmp_path / "ok.avi", [pinwheelish(i) for i in range(8)], 10.0)
    assert sniff_container(avi) == "avi"
    assert len(pipeline.score_clip(avi).frames) == 8  # accepted on the clip path
    heads = {"mkv": (b"\x1a\x45\xdf\xa3" + bytes(60), "matroska"),
             "ts": ((b"\x47" + bytes(187)) * 3, "mpegts")}
    for name, (data, container) in heads.items():
        (tmp_path / name).write_bytes(data)
        assert sniff_container(tmp_path / name) == container
    # FLV and a raw H.264 stream are not among the containers accepted: refused before FFmpeg sees them
    for name, data in {"flv": b"FLV\x01\x05" + bytes(100), "h264": b"\x00\x00\x00\x01\x67" + bytes(100)}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsupportedContainer):
            pipeline.score_clip(tmp_path / name)
    (tmp_path / "cut.avi").write_bytes(avi.read_bytes()[:2000])
    with pytest.raises(ClipError, match="truncated AVI"):
        pipeline.score_clip(tmp_path / "cut.avi")
