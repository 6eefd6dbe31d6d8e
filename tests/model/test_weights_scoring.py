import json
from pathlib import Path

import numpy as np
import pytest
import torch

import model.checkpoint as C
import model.predictor as P
from model import Calibration, CausalSmoother, FrameScorer, FrameScores, load_predictor, score_frames
from model.config import FlowNetConfig, ScoreConfig, get_preset
from model.flownet import FlowNet
from model.unet import Generator


def make_predictor(calibration: Calibration | None = None) -> P.Predictor:
    torch.manual_seed(0)
    cfg = get_preset("lite", num_frames=4, image_size=(64, 64))
    return P.Predictor(cfg, Generator(cfg).eval(), FlowNet(FlowNetConfig(image_size=(64, 64), base_width=8)).eval(),
                       calibration, ScoreConfig(), {"note": "test"}, torch.device("cpu"), "bf16")


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


def test_scorer_outputs_per_frame_metrics_and_heatmaps() -> None:
    p = make_predictor()
    windows = np.stack([np.stack([p.preprocess(f) for f in frames(5, s)]) for s in range(3)])
    out = p.score(windows)
    assert len(out) == 3
    for name in ("psnr", "local_psnr", "l_int", "l_grad", "l_flow", "a_t", "anomaly"):
        assert getattr(out, name).shape == (3,)
    assert out.score is None
    assert out.heatmap.shape == (3, 64, 64) and out.heatmap.min() >= 0 and out.heatmap.max() <= 1
    # A_t is the weighted sum of the three errors
    np.testing.assert_allclose(out.a_t, out.l_int + out.l_grad + out.l_flow, rtol=1e-5)
    # the worst patch is never better than the whole frame
    assert np.all(out.local_psnr <= out.psnr + 1e-4)
    with pytest.raises(ValueError, match="windows must be"):
        p.score(windows[:, :4])


def test_perfect_prediction_has_high_psnr() -> None:
    p = make_predictor()
    still = np.stack([p.preprocess(frames(1)[0])] * 5)[None]
    moving = np.stack([p.preprocess(f) for f in frames(5)])[None]
    assert p.score(still).psnr[0] > p.score(moving).psnr[0]


def test_calibrated_score_and_clip_scoring() -> None:
    p = make_predictor()
    rows = [f.metrics for f in score_frames(p, frames(12)) if f.metrics]
    anomaly = np.array([r["anomaly"] for r in rows])
    cal = Calibration.from_scores({k: np.array([r[k] for r in rows]) for k in rows[0] if k != "score"}, "test")
    pc = p.with_calibration(cal)
    scored = list(score_frames(pc, frames(12), batch_size=3))
    assert [s.index for s in scored] == list(range(12))
    assert all(s.metrics is None for s in scored[:4])  # no history yet
    z = np.array([s.metrics["score"] for s in scored[4:]])
    np.testing.assert_allclose(z, (anomaly - anomaly.mean()) / anomaly.std(), atol=1e-3)
    # batching does not change scores
    one_by_one = [s.metrics["psnr"] for s in score_frames(pc, frames(12), batch_size=1) if s.metrics]
    np.testing.assert_allclose(one_by_one, [s.metrics["psnr"] for s in scored[4:]], atol=0.05)


def test_causal_smoother_is_an_ema() -> None:
    s = CausalSmoother(half_life=1.0)
    assert s.update(0.0) == 0.0
    assert s.update(1.0) == pytest.approx(0.5)
    assert CausalSmoother(0).update(3.0) == 3.0


def test_weights_roundtrip_checksum_and_errors(tmp_path: Path) -> None:
    p = make_predictor()
    path = tmp_path / "w.pt"
    C.atomic_save(p.weights_blob(), path)
    C.record_in_manifest(path, "lite")  # tmp_path/manifest.json, beside the file
    loaded = load_predictor(path, device="cpu", precision=p.precision)  # like with like
    x = np.stack([np.stack([p.preprocess(f) for f in frames(5)])])
    np.testing.assert_allclose(loaded.score(x).psnr, p.score(x).psnr, atol=1e-4)
    assert loaded.meta["note"] == "test"

    with pytest.raises(C.WeightsError, match="preset 'lite', expected 'paper'"):
        load_predictor(path, device="cpu", expected_preset="paper")
    # corrupt the file: the checksum catches it
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(C.WeightsError, match="checksum mismatch"):
        load_predictor(path, device="cpu")
    # not listed in the manifest, truncated: a clear error, not a traceback from zipfile
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[:1000])
    with pytest.raises(C.WeightsError, match="corrupt"):
        load_predictor(bad, device="cpu")
    with pytest.raises(C.WeightsError, match="not found"):
        load_predictor(tmp_path / "missing.pt", device="cpu")


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    p = make_predictor()
    blob = p.weights_blob()
    blob["model_config"] = {**blob["model_config"], "base_width": 32}
    path = tmp_path / "mismatch.pt"
    torch.save(blob, path)
    with pytest.raises(C.WeightsError, match="do not fit"):
        load_predictor(path, device="cpu")
    torch.save({"format": "something-else"}, path)
    with pytest.raises(C.WeightsError, match="not an ffp weights file"):
        load_predictor(path, device="cpu")


def test_shipped_weights_verify_if_present() -> None:
    manifest = json.loads(C.MANIFEST.read_text())["files"] if C.MANIFEST.is_file() else {}
    for name, entry in manifest.items():
        assert C.sha256_file(C.WEIGHTS_DIR / name) == entry["sha256"], name


def test_model_card_lists_every_shipped_file_with_its_manifest_checksum_and_size() -> None:
    # The card's file table is what a user checks a download against: it must not go stale when weights change.
    manifest = json.loads(C.MANIFEST.read_text())["files"]
    card = (C.WEIGHTS_DIR / "README.md").read_text().splitlines()
    rows = {line.split("|")[1].strip().strip("`"): line for line in card if line.startswith("| `")}
    assert set(manifest) <= set(rows), f"files missing from the card's table: {set(manifest) - set(rows)}"
    for name, entry in manifest.items():
        assert f"`{entry['sha256']}`" in rows[name], name
        assert f"{entry['bytes']:,}" in rows[name], name


def test_optimised_cpu_forward_matches_eager_and_auto_precision_is_measured() -> None:
    from model.scoring import Scorer, build_forward

    torch.manual_seed(1)
    cfg = get_preset("lite", num_frames=4, image_size=(64, 64))
    gen = Generator(cfg).eval()
    fast = build_forward(gen, cfg, torch.device("cpu"), "fp32", optimize=True)
    assert isinstance(fast, torch.jit.ScriptModule)  # traced and frozen, not the eager fallback
    x = torch.rand(3, cfg.num_frames, 64, 64) * 2 - 1  # traced at batch 1, used at batch 3
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), gen(x).numpy(), atol=1e-5)
    windows = np.random.default_rng(0).uniform(-1, 1, (2, 5, 1, 64, 64)).astype(np.float32)
    a = Scorer(gen, None, cfg, precision="fp32", optimize=True)(windows)
    b = Scorer(gen, None, cfg, precision="fp32", optimize=False)(windows)
    np.testing.assert_allclose(a.psnr, b.psnr, rtol=1e-5)
    with pytest.raises(ValueError, match="windows must be"):  # the traced path still checks shapes
        Scorer(gen, None, cfg, precision="fp32", optimize=True)(windows[:, :, :, :32])
    # 'auto' on a CPU is whichever precision measured faster, and a loaded predictor uses it
    P._PRECISION_CACHE.clear()
    chosen, forward = P.fastest_cpu_precision(gen, cfg)
    assert chosen in ("fp32", "bf16") and forward is not None  # timed now: its forward is handed on
    assert P.fastest_cpu_precision(gen, cfg) == (chosen, None)  # cached: nothing built
    blob = make_predictor().weights_blob()
    assert P.predictor_from_blob(blob).precision in ("fp32", "bf16")
    assert P.predictor_from_blob(blob, precision="bf16").precision == "bf16"


class _Delegate:
    """A FrameScorer that is not a Predictor: exactly the protocol's members, nothing more."""

    def __init__(self, p: P.Predictor) -> None:
        self._p = p
        self.num_frames, self.config, self.calibration = p.num_frames, p.config, p.calibration

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return self._p.preprocess(frame)

    def score(self, windows: np.ndarray) -> FrameScores:
        return self._p.score(windows)


def test_clip_scoring_needs_only_the_frame_scorer_protocol() -> None:
    p = make_predictor()
    assert isinstance(p, FrameScorer) and isinstance(_Delegate(p), FrameScorer)
    assert not isinstance(object(), FrameScorer)
    direct = [s.metrics for s in score_frames(p, frames(8), batch_size=3)]
    wrapped = [s.metrics for s in score_frames(_Delegate(p), frames(8), batch_size=3)]
    assert direct == wrapped and sum(m is not None for m in wrapped) == 8 - p.num_frames


def test_score_config_accepts_the_legacy_empty_extra_and_refuses_unknown_fields(tmp_path: Path) -> None:
    blob = make_predictor().weights_blob()
    assert set(blob["score_config"]) == set(ScoreConfig().to_dict()) and "extra" not in blob["score_config"]
    legacy = {**blob, "score_config": {**blob["score_config"], "patch_fraction": 0.25, "extra": {}}}
    loaded = P.predictor_from_blob(legacy, device="cpu", precision="fp32")
    assert loaded.score_config == ScoreConfig(patch_fraction=0.25)
    for bad, unknown in (({"extra": {"k": 1}}, "extra"), ({"gama": 2.0}, "gama")):
        path = tmp_path / f"{unknown}.pt"
        C.atomic_save({**blob, "score_config": {**blob["score_config"], **bad}}, path)
        expected = rf"{unknown}\.pt: bad score config: unknown ScoreConfig fields: \['{unknown}'\]"
        with pytest.raises(C.WeightsError, match=expected):
            load_predictor(path, device="cpu", precision="fp32")


def test_shipped_weights_files_keep_their_stored_score_config() -> None:
    # The shipped files are checksummed, so they keep their unused `extra: {}`: it must load as stored.
    weights = [name for name in json.loads(C.MANIFEST.read_text())["files"] if name.startswith("ffp-")]
    assert weights, "no shipped weights listed in the manifest"
    stored = [C.weights_of(C.safe_torch_load(C.WEIGHTS_DIR / name))["score_config"] for name in weights]
    assert any(sc.get("extra") == {} for sc in stored)
    for sc in stored:
        loaded = ScoreConfig.from_dict(sc).to_dict()
        assert {k: loaded[k] for k in sc if k != "extra"} == {k: v for k, v in sc.items() if k != "extra"}
        assert {k: v for k, v in loaded.items() if k not in sc} == {k: v for k, v in ScoreConfig().to_dict().items()
                                                                    if k not in sc}  # absent: the defaults


def test_shipped_lite_generator_is_the_trained_one_bit_for_bit() -> None:
    # Re-calibrating and re-exporting the shipped weights must never touch the generator the card measured.
    import hashlib

    generator = C.weights_of(C.safe_torch_load(C.WEIGHTS_DIR / "ffp-ped2-lite.pt"))["generator"]
    h = hashlib.sha256()
    for name in sorted(generator):
        h.update(name.encode())
        h.update(generator[name].contiguous().numpy().tobytes())
    assert h.hexdigest() == "c0cffb6240f9e5208d7e6ea32bd6932f62e56e9fd5faa5164621f73c10deb223"
