"""The location-aware scores: per-cell statistics from normal footage, stored in the calibration."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.config import ScoreConfig
from model.evaluate import calibrate_predictor
from model.scoring import cell_anomaly, cell_statistics
from tests.model.test_weights_scoring import frames, make_predictor


def test_cell_statistics_floor_a_cell_without_spread_at_the_median_spread() -> None:
    rng = np.random.default_rng(0)
    err = rng.normal(0, [3.0, 3.5, 4.0, 0.1, 0.0], (4000, 5))  # the last cells (almost) never change
    stats = cell_statistics(err, np.zeros_like(err))
    median = float(np.median(err.std(0)))
    assert median == pytest.approx(3.0, rel=0.05)
    assert stats["error_std"] == pytest.approx([*err.std(0)[:3], median, median])  # floored, not ~0
    assert stats["speed_std"] == [1e-6] * 5  # no motion anywhere: the absolute floor


def test_cell_anomaly_kinds() -> None:
    err = np.array([[1.0, 5.0], [2.0, 2.0]])
    speed = np.array([[4.0, 0.0], [0.0, 0.0]])
    cells = {"error_mean": np.array([0.0, 4.0]), "error_std": np.array([1.0, 0.5]),
             "speed_mean": np.array([0.0, 0.0]), "speed_std": np.array([2.0, 1.0])}
    # z(e) = [[1, 2], [2, -4]], z(v) = [[2, 0], [0, 0]]
    assert cell_anomaly(err, speed, cells, "worst_patch").tolist() == [5.0, 2.0]
    assert cell_anomaly(err, speed, None, "cell_error").tolist() == [5.0, 2.0]  # no statistics: the worst patch
    assert cell_anomaly(err, speed, cells, "cell_error").tolist() == [2.0, 2.0]
    assert cell_anomaly(err, speed, cells, "cell_error_speed").tolist() == [3.0, 2.0]
    assert cell_anomaly(err, speed, cells, "cell_max").tolist() == [2.0, 2.0]
    assert cell_anomaly(err, speed, cells, "cell_speed").tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="anomaly"):
        ScoreConfig(anomaly="nope")


def test_worst_patch_is_the_worst_cell_and_cells_come_with_every_frame() -> None:
    p = make_predictor()
    windows = np.stack([np.stack([p.preprocess(f) for f in frames(p.num_frames + 1, seed=s)]) for s in range(3)])
    s = p.score(windows)
    assert s.cell_error.shape == s.cell_speed.shape and s.cell_error.shape[0] == 3
    assert np.array_equal(s.anomaly, -s.local_psnr) and np.array_equal(s.anomaly, s.cell_error.max(1))
    assert (s.cell_speed > 0).any()  # the frames move: DIS sees it


def test_calibration_stores_cell_statistics_and_scores_with_them() -> None:
    p = make_predictor()
    p = dataclasses.replace(p, score_config=ScoreConfig(anomaly="cell_error"))
    video = np.stack([p.preprocess(f) for f in frames(30)])
    cal = calibrate_predictor(p, [video], source="test")
    n_cells = p.score(video[None, :p.num_frames + 1]).cell_error.shape[1]
    assert cal.cells is not None and len(cal.cells["error_mean"]) == n_cells
    calibrated = p.with_calibration(cal)
    windows = np.stack([video[i:i + p.num_frames + 1] for i in range(len(video) - p.num_frames)])
    s = calibrated.score(windows)
    assert s.score is not None and abs(float(np.mean(s.score))) < 1e-3
    assert float(np.std(s.score)) == pytest.approx(1, rel=1e-3)  # z of the calibration's own footage
    assert np.allclose(s.anomaly, cell_anomaly(s.cell_error, s.cell_speed, cal.cell_arrays(), "cell_error"))
