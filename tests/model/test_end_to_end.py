"""Train for about a minute on a synthetic scene with regular motion, evaluate on clips with an injected
irregular event, and check the detector is far above chance under both protocols."""
import json
from pathlib import Path

import numpy as np
import pytest

from model import AlertParams
from model.cli import main as ffp
from model.config import FlowNetConfig, get_preset
from model.data import find_videos, load_videos
from model.flownet import train_flownet

from .synthetic import make_dataset


@pytest.mark.timeout(400)
def test_train_then_eval_detects_injected_event(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "scene", size=64, train_videos=5, test_videos=3, length=60)
    flow_path = tmp_path / "flow.pt"
    cfg = get_preset("lite", num_frames=4, image_size=(64, 64))
    videos = load_videos(find_videos(data, "training"), cfg)
    flow_metrics = train_flownet(videos, FlowNetConfig(image_size=(64, 64), base_width=8), flow_path, steps=150,
                                 max_pairs=400, progress=False)
    assert flow_metrics["val_epe_l1"] < flow_metrics["zero_flow_l1"]  # it learned some motion

    run = tmp_path / "run"
    from model.config import TrainConfig
    from model.train import train

    # a fixed 300-step schedule (about a minute on 2 cores); the time box only guards a very slow machine
    ckpt = train(TrainConfig(data=data, out=run, preset="lite", steps=300, max_minutes=3.0, flownet=flow_path,
                             holdout=1, val_every=100, progress=False, arch={"num_frames": 4, "image_size": (64, 64)},
                             lr_g=1e-3, lr_d=1e-4, lr_decay_step=None))
    assert (run / "metrics.csv").read_text().count("\n") > 3
    report_path = tmp_path / "r.json"
    ffp(["eval", "--data", str(data), "--weights", str(ckpt), "--out", str(report_path)])
    report = json.loads(report_path.read_text())
    for key in ("dataset", "weights", "frames", "auc_paper_psnr", "auc_paper_smoothed", "auc_combined", "auc_causal",
                "fps"):
        assert key in report
    assert report["frames"] == 3 * (60 - 4)
    assert report["calibrated"] is True
    assert report["auc_paper_psnr"] > 0.85, report
    assert report["auc_causal"] > 0.85, report
    assert 0.0 <= report["auc_combined"] <= 1.0
    assert Path(report["plots"]["roc"]).is_file() and Path(report["plots"]["timelines"]).is_file()
    # event level: one injected episode per test video, replayed through the alert engine
    assert report["episodes"] == 3 and 0 <= report["episodes_alerted"] <= 3
    assert report["event_recall"] == report["episodes_alerted"] / 3
    operating = [r["on_threshold"] for r in report["threshold_sweep"] if r["operating_point"]]
    assert operating == [AlertParams().on_threshold]
    assert Path(report["plots"]["threshold_sweep"]).is_file()
    # the per-frame file reproduces the headline numbers, and each mixed video reports its own AUC
    import csv

    from model.evaluate import roc_auc

    rows = list(csv.DictReader(Path(report["frames_csv"]).read_text().splitlines()))
    assert len(rows) == report["frames"]
    labels = np.array([int(r["label"]) for r in rows])
    for protocol in ("paper_psnr", "paper_smoothed", "causal"):
        recomputed = roc_auc(np.array([float(r[f"protocol_{protocol}"]) for r in rows]), labels)
        assert abs(recomputed - report[f"auc_{protocol}"]) < 1e-4
    mixed = [v for v in report["per_video"].values() if 0 < v["anomalous"] < v["frames"] - 4]
    assert mixed and all(0.0 <= v["auc_paper_psnr"] <= 1.0 for v in mixed)
    # training resumes from its last checkpoint and keeps the step count
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] > 100
    assert np.isfinite(summary["best_val_psnr"])
