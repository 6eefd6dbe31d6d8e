"""The evaluation protocols on hand-made score series: what each one normalises, smooths and keeps apart."""
import math

import numpy as np

from model.evaluate import protocol_scores, roc_auc


def _video(psnr: list[float]) -> dict[str, np.ndarray]:
    x = np.array(psnr, np.float64)
    return {"psnr": x, "local_psnr": x, "a_t": -x, "anomaly": -x, "score": -x}


def test_paper_smoothed_is_the_causal_ema_of_psnr_then_per_video_minmax() -> None:
    k, half_life = 2, 2.0
    psnr = [0.0, 0.0, 40.0, 41.0, 30.0, 40.0, 42.0]  # the first k frames are dropped by every protocol
    out = protocol_scores({"v": _video(psnr)}, k, None, half_life)
    alpha = 1.0 - math.pow(0.5, 1.0 / half_life)
    ema, expected = None, []
    for x in psnr[k:]:
        ema = x if ema is None else ema + alpha * (x - ema)
        expected.append(ema)
    e = np.array(expected)
    np.testing.assert_allclose(out["paper_smoothed"]["v"], 1 - (e - e.min()) / (e.max() - e.min()))
    # the paper's own protocol stays unsmoothed: each frame scored alone
    p = np.array(psnr[k:])
    np.testing.assert_allclose(out["paper_psnr"]["v"], 1 - (p - p.min()) / (p.max() - p.min()))
    assert not np.allclose(out["paper_smoothed"]["v"], out["paper_psnr"]["v"])


def test_smoothing_starts_afresh_in_each_video() -> None:
    # the same series after a very different video must give the same smoothed scores: no state crosses videos
    a = protocol_scores({"x": _video([0, 0, 10, 11, 12])}, 2, None, 2.0)
    b = protocol_scores({"y": _video([0, 0, 90, 95, 99]), "x": _video([0, 0, 10, 11, 12])}, 2, None, 2.0)
    np.testing.assert_allclose(a["paper_smoothed"]["x"], b["paper_smoothed"]["x"])
    np.testing.assert_allclose(a["causal"]["x"], b["causal"]["x"])


def test_smoothing_averages_out_single_frame_noise() -> None:
    # normal frames whose PSNR jumps by +-1 dB from frame to frame (noise from each input window) against a
    # lasting 0.8 dB dip: frame by frame half the normal frames rank below the dip; smoothed, far fewer do
    rng = np.random.default_rng(0)
    normal = 40 + rng.choice([-1.0, 1.0], size=60)
    psnr = np.r_[0, 0, normal[:30], np.full(20, 39.2), normal[30:]]
    labels = np.r_[np.zeros(30), np.ones(20), np.zeros(30)].astype(bool)
    out = protocol_scores({"v": _video(list(psnr))}, 2, None, 2.0)
    raw, smoothed = roc_auc(out["paper_psnr"]["v"], labels), roc_auc(out["paper_smoothed"]["v"], labels)
    assert raw < 0.6 and smoothed > raw + 0.2, (raw, smoothed)
