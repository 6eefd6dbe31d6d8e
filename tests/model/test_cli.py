"""Bad input to the `ffp` command: a clear one-line error, exit status 2, nothing half-written."""
import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def ffp(*args: str) -> Run:
    """`ffp ARGS` through its entry point (model.cli:main) in this process, as the console script runs it: exit
    status, stdout, stderr. In-process because a new interpreter costs an import of torch per call, the larger
    part of these tests on a busy 2-core machine; test_the_console_script_runs covers the real process."""
    from model.cli import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()  # a command sets torch's threads for its process
    code: int = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        torch.set_num_threads(threads)
    return Run(code, out.getvalue(), err.getvalue())


def test_the_console_script_runs() -> None:
    """The real process: `python -m model.cli` parses, dispatches and exits with the status in-process runs see."""
    r = subprocess.run([sys.executable, "-m", "model.cli", "score", "/nonexistent.mp4", "--threads", "1"],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "ffp score: error: video not found: /nonexistent.mp4", r.stderr


def test_a_corrupt_video_is_one_line_without_ffmpegs_own(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    r = subprocess.run([sys.executable, "-m", "model.cli", "score", str(corrupt), "--threads", "1"],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == f"ffp score: error: cannot open video {corrupt}", r.stderr


def test_help_lists_the_commands() -> None:
    out = ffp("--help").stdout
    for cmd in ("train", "train-flow", "learn", "eval", "calibrate", "score", "serve", "export"):
        assert cmd in out
    assert "average" not in out


def test_missing_dataset_path(tmp_path: Path) -> None:
    r = ffp("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--no-flow")
    assert r.returncode == 2
    assert "dataset path does not exist" in r.stderr and "Traceback" not in r.stderr


def test_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "training").mkdir()
    r = ffp("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-flow")
    assert r.returncode == 2 and "no videos found" in r.stderr


def test_eval_with_missing_and_corrupt_weights(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    data = tmp_path  # the weights are loaded (and refused) before the data set is looked at
    r = ffp("eval", "--data", str(data), "--weights", str(tmp_path / "missing.pt"), "--out", str(out))
    assert r.returncode == 2 and "weights file not found" in r.stderr
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    r = ffp("eval", "--data", str(data), "--weights", str(corrupt), "--out", str(out))
    assert r.returncode == 2 and "corrupt" in r.stderr
    assert not out.exists()  # nothing half-written


def test_label_count_mismatch(tmp_path: Path, ped2: Path) -> None:
    from tests.model.test_weights_scoring import make_predictor

    weights = tmp_path / "w.pt"
    torch.save(make_predictor().weights_blob(), weights)
    bad_labels = tmp_path / "labels.json"
    bad_labels.write_text('{"01": [0, 1]}')
    r = ffp("eval", "--data", str(ped2), "--weights", str(weights), "--labels", str(bad_labels),
            "--out", str(tmp_path / "r.json"))
    assert r.returncode == 2 and "no labels for videos" in r.stderr
    assert not (tmp_path / "r.json").exists()


def test_resume_refuses_a_checkpoint_of_another_preset(tmp_path: Path) -> None:
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=12)
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(run), "--no-flow", "--steps", "2", "--holdout", "1",
            "--val-every", "1", "--threads", "1"]
    r = ffp(*base, "--preset", "lite")
    # the lite preset's 128x128 frames from 64x64 images is fine: it trains 2 steps and writes a checkpoint
    assert r.returncode == 0, r.stderr
    assert (run / "last.pt").is_file()
    r = ffp(*base, "--preset", "paper", "--steps", "3")
    assert r.returncode == 2 and "made for preset 'lite'" in r.stderr
    (run / "last.pt").write_bytes(b"garbage")
    r = ffp(*base, "--steps", "3")
    assert r.returncode == 2 and "corrupt" in r.stderr


def test_training_precision_is_chosen_and_recorded(tmp_path: Path) -> None:
    from model.checkpoint import safe_torch_load
    from model.config import TrainConfig
    from model.train import train
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=12)
    with pytest.raises(ValueError, match="precision must be"):
        train(TrainConfig(data=data, out=tmp_path / "bad", precision="int8", progress=False))
    assert not (tmp_path / "bad").exists()
    for precision, expected in (("auto", "fp32"), ("bf16", "bf16")):  # auto on a CPU trains in fp32
        run = tmp_path / precision
        r = ffp("train", "--data", str(data), "--out", str(run), "--no-flow", "--steps", "2", "--holdout", "1",
                "--val-every", "1", "--threads", "1", "--arch", "image_size=[64,64]", "--precision", precision)
        assert r.returncode == 0, r.stderr
        meta = safe_torch_load(run / "best.pt")["weights"]["meta"]
        assert meta["precision"] == expected


@pytest.mark.parametrize("cmd", [["score", "/nonexistent.mp4"]])
def test_score_missing_video(cmd: list[str], tmp_path: Path) -> None:
    from tests.model.test_weights_scoring import make_predictor

    weights = tmp_path / "w.pt"
    torch.save(make_predictor().weights_blob(), weights)
    r = ffp(*cmd, "--weights", str(weights))
    assert r.returncode == 2 and "video not found" in r.stderr


def test_arch_overrides_are_parsed_and_checked() -> None:
    from model.cli import _arch_overrides
    from model.data import DataError

    assert _arch_overrides(["depth=5", "image_size=[128,192]", "residual=false"]) == {
        "depth": 5, "image_size": (128, 192), "residual": False}
    for bad in ("depth", "name=x", "colour=3"):
        with pytest.raises(DataError, match="FIELD=VALUE"):
            _arch_overrides([bad])


def test_export_writes_weights_and_an_onnx_generator_that_matches_torch(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from model.checkpoint import WEIGHTS_DIR
    from model.predictor import load_predictor

    shipped = WEIGHTS_DIR / "ffp-ped2-lite.pt"
    r = ffp("export", str(shipped), "--out", str(tmp_path / "w.pt"), "--onnx", str(tmp_path / "g.onnx"))
    assert r.returncode == 0, r.stderr
    p = load_predictor(tmp_path / "w.pt", precision="fp32")
    past = np.random.default_rng(0).uniform(-1, 1, (3, p.num_frames, 128, 128)).astype(np.float32)
    (onnx_pred,) = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"past": past})
    with torch.no_grad():
        torch_pred = p.generator.float()(torch.from_numpy(past)).numpy()
    assert onnx_pred.shape == (3, 1, 128, 128)  # the batch axis is dynamic
    np.testing.assert_allclose(onnx_pred, torch_pred, atol=1e-4)
    meta = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"]).get_modelmeta()
    config = json.loads(meta.custom_metadata_map["ffp.config"])  # how to cut windows, for ONNX consumers
    assert config["num_frames"] == p.num_frames and config["frame_stride"] == p.config.frame_stride
    assert config["image_size"] == list(p.config.image_size)


def test_export_half_stores_float16_and_predicts_like_the_original(tmp_path: Path) -> None:
    import numpy as np

    from model.checkpoint import WEIGHTS_DIR, safe_torch_load
    from model.predictor import load_predictor

    shipped = WEIGHTS_DIR / "ffp-ped2-lite.pt"
    r = ffp("export", str(shipped), "--out", str(tmp_path / "h.pt"), "--half")
    assert r.returncode == 0, r.stderr
    blob = safe_torch_load(tmp_path / "h.pt")
    assert {t.dtype for t in blob["generator"].values()} == {torch.float16}
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * shipped.stat().st_size
    full, half = load_predictor(shipped, precision="fp32"), load_predictor(tmp_path / "h.pt", precision="fp32")
    assert half.calibration == full.calibration  # the calibration travels unchanged
    past = np.random.default_rng(0).uniform(-1, 1, (2, full.num_frames, 128, 128)).astype(np.float32)
    with torch.no_grad():
        a = full.generator.float()(torch.from_numpy(past)).numpy()
        b = half.generator.float()(torch.from_numpy(past)).numpy()
    assert np.abs(a - b).max() < 2e-2  # fp16 rounding of the weights, not another model
    assert np.abs(a - b).max() > 0  # and the weights were rounded


def test_init_fine_tunes_at_another_image_size_and_refuses_another_architecture(tmp_path: Path) -> None:
    from model.checkpoint import safe_torch_load, sha256_file
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=12)
    base = ["train", "--data", str(data), "--no-flow", "--holdout", "1", "--val-every", "1", "--threads", "1"]
    src = tmp_path / "src"
    r = ffp(*base, "--out", str(src), "--steps", "2", "--arch", "image_size=[32,32]")
    assert r.returncode == 0, r.stderr
    # zero steps: the new run's weights are exactly the initial ones, at the new size
    dst = tmp_path / "dst"
    r = ffp(*base, "--out", str(dst), "--steps", "0", "--arch", "image_size=[32,48]", "--init", str(src / "best.pt"))
    assert r.returncode == 0, r.stderr
    before, after = safe_torch_load(src / "best.pt"), safe_torch_load(dst / "last.pt")
    assert tuple(after["weights"]["model_config"]["image_size"]) == (32, 48)
    for name, t in before["weights"]["generator"].items():
        assert torch.equal(t, after["weights"]["generator"][name]), name
    for name, t in before["discriminator"].items():
        assert torch.equal(t, after["discriminator"][name]), name
    assert after["weights"]["meta"]["init"]["sha256"] == sha256_file(src / "best.pt")
    # resuming (without --init) trains on from the run's own checkpoint and keeps the record of its start
    r = ffp(*base, "--out", str(dst), "--steps", "1", "--arch", "image_size=[32,48]")
    assert r.returncode == 0, r.stderr
    resumed = safe_torch_load(dst / "last.pt")
    assert resumed["step"] == 1 and resumed["weights"]["meta"]["init"] == after["weights"]["meta"]["init"]
    # another width does not fit: a clear error, no run folder written
    r = ffp(*base, "--out", str(tmp_path / "bad"), "--steps", "1", "--arch", "base_width=8", "--arch",
            "image_size=[32,32]", "--init", str(src / "best.pt"))
    assert r.returncode == 2 and "does not fit this architecture" in r.stderr
    r = ffp(*base, "--out", str(tmp_path / "bad2"), "--steps", "1", "--init", str(tmp_path / "none.pt"))
    assert r.returncode == 2 and "not found" in r.stderr


def test_cosine_schedule_and_weight_ema_are_trained_validated_and_resumed(tmp_path: Path) -> None:
    import csv
    import math
    import shutil

    from model.checkpoint import safe_torch_load
    from model.config import TrainConfig
    from model.train import train
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=12)
    common = {"data": data, "holdout": 1, "val_every": 1, "threads": 1, "progress": False, "lr_g": 1e-3,
              "w_int": 1.0, "w_grad": 1.0, "w_flow": 0.0, "w_adv": 0.05,
              "arch": {"num_frames": 4, "image_size": (32, 32)}}
    with pytest.raises(ValueError, match="lr schedule"):
        train(TrainConfig(out=tmp_path / "bad", lr_schedule="linear", **common))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--ema"):
        train(TrainConfig(out=tmp_path / "bad", ema=1.5, steps=1, **common))  # type: ignore[arg-type]
    src = tmp_path / "src"
    train(TrainConfig(out=src, steps=0, **common))  # type: ignore[arg-type]
    init = safe_torch_load(src / "last.pt")["weights"]["generator"]

    run = tmp_path / "ema"
    args = dict(out=run, lr_schedule="cosine", ema=0.5, init=src / "last.pt", **common)
    train(TrainConfig(steps=1, **args))  # type: ignore[arg-type]
    one = safe_torch_load(run / "last.pt")
    raw, shipped = one["generator_train"], one["weights"]["generator"]
    assert one["weights"]["meta"]["ema"] == 0.5 and one["weights"]["meta"]["lr_schedule"] == "cosine"
    # first update: the warm-up decay is min(0.5, 1/10) = 0.1, so the average is 0.1 init + 0.9 raw
    for name, t in init.items():
        assert not torch.equal(raw[name], t) or name.endswith("bias"), name
        assert torch.allclose(shipped[name], 0.1 * t + 0.9 * raw[name], atol=1e-6), name

    # resume for two more steps: the average goes on from the saved average, training from the raw weights
    shutil.rmtree(run)
    train(TrainConfig(steps=2, **args))  # type: ignore[arg-type]
    two = safe_torch_load(run / "last.pt")
    train(TrainConfig(steps=3, **args))  # type: ignore[arg-type]
    three = safe_torch_load(run / "last.pt")
    assert three["step"] == 3
    d = min(0.5, 3 / 12)  # the decay of the update made at step index 2
    for name, t in three["weights"]["generator"].items():
        expected = d * two["weights"]["generator"][name] + (1 - d) * three["generator_train"][name]
        assert torch.allclose(t, expected, atol=1e-6), name
    # best.pt holds the averaged generator that validation measured
    assert set(safe_torch_load(run / "best.pt")["weights"]["generator"]) == set(init)

    # the logged learning rate follows half a cosine from 1e-3 to 0 over the run's 4 steps
    cosine = tmp_path / "cosine"
    train(TrainConfig(out=cosine, steps=4, lr_schedule="cosine", **common))  # type: ignore[arg-type]
    rows = list(csv.DictReader((cosine / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        s = int(row["step"])
        assert math.isclose(float(row["lr_g"]), 1e-3 * 0.5 * (1 + math.cos(math.pi * s / 4)), abs_tol=1e-12), row
    assert float(rows[-1]["lr_g"]) < 1e-12


def test_crops_are_trained_recorded_and_whole_frames_are_validated_and_scored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model.checkpoint import safe_torch_load
    from model.config import TrainConfig
    from model.predictor import load_predictor
    from model.train import train
    from model.unet import Generator
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=24)
    common = {"data": data, "holdout": 1, "val_every": 2, "threads": 1, "progress": False, "steps": 4,
              "w_int": 1.0, "w_grad": 1.0, "w_flow": 0.0, "w_adv": 0.0,
              "arch": {"num_frames": 4, "image_size": (32, 32)}}
    crop_run = tmp_path / "crop"
    trained_on: list[tuple[int, ...]] = []  # what the training steps fed the generator
    forward = Generator.forward
    monkeypatch.setattr(Generator, "forward",
                        lambda self, past, crop=False: (crop and trained_on.append(tuple(past.shape)))
                        or forward(self, past, crop))
    train(TrainConfig(out=crop_run, crop=16, batch_size=2, **common))  # type: ignore[arg-type]
    monkeypatch.undo()
    assert trained_on == [(2, 4, 16, 16)] * 4
    crop_ckpt = safe_torch_load(crop_run / "last.pt")
    assert crop_ckpt["weights"]["meta"]["crop"] == 16 and crop_ckpt["step"] == 4
    assert np.isfinite(crop_ckpt["best_val_psnr"])
    cropped = load_predictor(crop_run / "last.pt", device="cpu")
    with torch.no_grad():
        assert cropped.generator(torch.zeros(1, 4, 32, 32)).shape == (1, 1, 32, 32)
        with pytest.raises(ValueError, match="expects"):  # crops are for training only
            cropped.generator(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="--crop"):
        train(TrainConfig(out=tmp_path / "bad", crop=12, **common))  # type: ignore[arg-type]


def test_threads_option_of_every_command(tmp_path: Path) -> None:
    from tests.model.synthetic import make_dataset
    from tests.model.test_weights_scoring import make_predictor

    data = make_dataset(tmp_path / "data", train_videos=1, test_videos=1, length=10)
    weights = tmp_path / "w.pt"
    torch.save(make_predictor().weights_blob(), weights)
    clip = data / "testing" / "frames" / "01"
    out = tmp_path / "scores.json"
    r = ffp("score", str(clip), "--weights", str(weights), "--threads", "0", "--out", str(out))
    assert r.returncode == 2 and "--threads: must be at least 1" in r.stderr and not out.exists()
    r = ffp("score", str(clip), "--weights", str(weights), "--threads", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    scored = json.loads(out.read_text())
    assert len(scored["frames"]) == 10
    # POST /v1/score's frame fields: a folder of frames has no rate of its own, so 25 frames/s (or --fps)
    assert scored["fps"] == 25.0 and [f["time"] for f in scored["frames"][:3]] == [0.0, 0.04, 0.08]
    assert {"index", "time", "score", "smoothed", "psnr", "local_psnr"} <= set(scored["frames"][9])
    r = ffp("score", str(clip), "--weights", str(weights), "--threads", "1", "--fps", "10")
    assert r.returncode == 0 and json.loads(r.stdout)["frames"][9]["time"] == 0.9, r.stderr
    for cmd in ("eval", "calibrate"):
        assert "--threads" in ffp(cmd, "--help").stdout
    for cmd in (["train", "--data", str(data), "--out", str(tmp_path / "run")],
                ["train-flow", "--data", str(data), "--out", str(tmp_path / "flow.pt")]):
        r = ffp(*cmd, "--threads", "0")  # the training commands check it the same way, before any work
        assert r.returncode == 2 and "must be at least 1" in r.stderr and "--threads" in r.stderr, (cmd, r.stderr)
        assert not Path(cmd[-1]).exists()


def test_precision_option_of_the_scoring_commands(tmp_path: Path) -> None:
    """The named precision is what eval uses and records (auto may pick either, by timing); a bad value is
    refused before any work."""
    from tests.model.synthetic import make_dataset
    from tests.model.test_weights_scoring import make_predictor

    data = make_dataset(tmp_path / "data", train_videos=1, test_videos=2, length=12)
    weights = tmp_path / "w.pt"
    torch.save(make_predictor().weights_blob(), weights)
    out = tmp_path / "r.json"
    for precision in ("fp32", "bf16"):  # one of the two differs from whatever auto would time faster here
        r = ffp("eval", "--data", str(data), "--weights", str(weights), "--out", str(out), "--precision", precision,
                "--threads", "1", "--no-plots")
        assert r.returncode == 0, r.stderr
        assert json.loads(out.read_text())["precision"] == precision
    r = ffp("eval", "--data", str(data), "--weights", str(weights), "--out", str(tmp_path / "x.json"),
            "--precision", "fp8")
    assert r.returncode == 2 and "invalid choice" in r.stderr and not (tmp_path / "x.json").exists()
    for cmd in ("score", "calibrate"):
        assert "--precision" in ffp(cmd, "--help").stdout


def parse_train(*args: str):  # type: ignore[no-untyped-def]
    from model.cli import train_config
    from model.cli_args import build_parser

    return train_config(build_parser().parse_args(["train", *args]))


def test_the_lite_recipe_is_the_training_the_shipped_weights_record(tmp_path: Path, ped2: Path) -> None:
    """`ffp train --recipe ped2-lite` resolves to what weights/ffp-ped2-lite.pt recorded of its run, and its
    preset is the shipped architecture (no --arch needed)."""
    from model.checkpoint import WEIGHTS_DIR
    from model.config import ModelConfig
    from model.data import find_videos, split_holdout
    from model.train import plan, run_meta

    shipped = torch.load(WEIGHTS_DIR / "ffp-ped2-lite.pt", weights_only=True)
    meta = shipped["meta"]
    cfg = parse_train("--recipe", "ped2-lite", "--data", str(ped2), "--out", str(tmp_path / "run"))
    run = plan(cfg)
    train_src, val_src = split_holdout(find_videos(ped2, "training"), cfg.holdout)
    resolved = run_meta(cfg, run, train_src, val_src, precision=cfg.precision)
    for key in ("dataset", "train_videos", "holdout_videos", "lr_g", "lr_d", "batch_size", "seed", "precision",
                "lr_schedule", "ema", "crop"):
        assert resolved[key] == meta[key], key
    legacy = {"compactness", "separateness"}  # the terms of a removed generator memory, recorded as unused
    assert resolved["loss_weights"] == {k: v for k, v in meta["loss_weights"].items() if k not in legacy}
    assert cfg.steps == meta["step"] == 80000
    assert cfg.preset == "lite" and cfg.arch == {}
    assert run.model == ModelConfig.from_dict(shipped["model_config"])
    # the shipped file is the run's last step calibrated in fp32 on the held-out videos: what the run returns
    assert cfg.ship == "last" and cfg.calibration_precision == "fp32"


def test_options_given_override_the_recipe_and_defaults_are_written_once() -> None:
    from model.config import TrainConfig

    cfg = parse_train("--recipe", "ped2-lite", "--data", "d", "--out", "o", "--seed", "3", "--w-grad", "1",
                      "--arch", "num_frames=4", "--no-adv")
    assert (cfg.seed, cfg.w_grad, cfg.arch, cfg.w_adv) == (3, 1.0, {"num_frames": 4}, 0.0)
    assert (cfg.steps, cfg.lr_g, cfg.crop, cfg.ship) == (80000, 2e-4, 64, "last")  # the rest from the recipe
    paper = parse_train("--recipe", "ped2-paper", "--data", "d", "--out", "o", "--arch", "base_width=8")
    assert paper.arch == {"residual": True, "base_width": 8} and paper.preset == "paper"
    # without a recipe, the command line's defaults are TrainConfig's
    assert parse_train("--data", "d", "--out", "o") == TrainConfig(data=Path("d"), out=Path("o"))
    assert parse_train("--data", "d", "--out", "o", "--no-resume").resume is False


def test_unknown_recipe_or_recipe_key_is_a_one_line_error(tmp_path: Path) -> None:
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    r = ffp(*base, "--recipe", "nope")
    assert r.returncode == 2 and "unknown recipe 'nope'" in r.stderr and "ped2-lite" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    for text, message in (("preset: lite\nlearning_rate: 0.1\n", "unknown keys ['learning_rate']"),
                          ("seed: many\n", "seed: expected int"), ("- a list\n", "expected a mapping")):
        bad.write_text(text)
        r = ffp(*base, "--recipe", str(bad))
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()


def test_ship_last_calibrates_and_returns_the_last_step_as_ffp_calibrate_would(tmp_path: Path) -> None:
    from model.checkpoint import safe_torch_load
    from model.config import TrainConfig
    from model.train import train
    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "scene", size=64, train_videos=3, test_videos=1, length=12)
    run = tmp_path / "run"
    path = train(TrainConfig(data=data, out=run, steps=2, holdout=1, val_every=1, threads=1, progress=False,
                             w_flow=0.0, arch={"num_frames": 4, "image_size": (32, 32)}, ship="last",
                             calibration_precision="fp32"))
    assert path == run / "last.pt" and json.loads((run / "summary.json").read_text())["checkpoint"] == str(path)
    calibration = safe_torch_load(path)["weights"]["calibration"]
    assert calibration is not None and safe_torch_load(run / "best.pt")["weights"]["calibration"] is None
    r = ffp("calibrate", "--data", str(data), "--weights", str(path), "--holdout", "1", "--precision", "fp32",
            "--threads", "1", "--out", str(tmp_path / "cal.pt"))
    assert r.returncode == 0, r.stderr
    again = safe_torch_load(tmp_path / "cal.pt")["weights"]["calibration"]
    for key in ("mean", "std", "quantiles", "frames"):
        assert calibration[key] == again[key], key


def test_the_paper_recipe_builds_the_shipped_paper_architecture(tmp_path: Path, ped2: Path) -> None:
    """ped2-paper encodes the first of the two stages that made weights/ffp-ped2-paper.pt (the second, a time
    box from the first's best.pt, is in the recipe's comments): same architecture, data split, loss weights,
    batch and seed as the shipped file records."""
    from model.checkpoint import WEIGHTS_DIR
    from model.config import ModelConfig
    from model.data import find_videos, split_holdout
    from model.train import plan, run_meta

    shipped = torch.load(WEIGHTS_DIR / "ffp-ped2-paper.pt", weights_only=True)
    cfg = parse_train("--recipe", "ped2-paper", "--data", str(ped2), "--out", str(tmp_path / "run"))
    run = plan(cfg)
    assert run.model == ModelConfig.from_dict(shipped["model_config"])
    train_src, val_src = split_holdout(find_videos(ped2, "training"), cfg.holdout)
    resolved = run_meta(cfg, run, train_src, val_src, precision=cfg.precision)
    for key in ("dataset", "train_videos", "holdout_videos", "loss_weights", "batch_size", "seed", "precision"):
        assert resolved[key] == shipped["meta"][key], key
    assert shipped["meta"]["init"]["step"] == cfg.steps  # stage 2 started from stage 1's last step


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    r = subprocess.run([sys.executable, "-m", "model.cli", "--version"], check=False, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"ffp {version('ffp')}", r.stdout + r.stderr


def test_scoring_commands_default_to_half_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """eval, calibrate and score leave a core to other work unless --threads says otherwise."""
    import argparse
    import os

    import model.predictor
    from model.cli import _load, default_scoring_threads

    before = torch.get_num_threads()
    monkeypatch.setattr(model.predictor, "load_predictor", lambda *a, **k: "loaded")
    try:
        for cores, expected in ((1, 1), (2, 1), (3, 1), (16, 8)):
            monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
            assert default_scoring_threads() == expected
            args = argparse.Namespace(threads=None, weights=None, device="cpu", precision="auto")
            assert _load(args) == "loaded" and torch.get_num_threads() == expected
        args = argparse.Namespace(threads=3, weights=None, device="cpu", precision="auto")
        _load(args)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_eval_alerts_file_fps_and_calibrate_anomaly(tmp_path: Path) -> None:
    from tests.model.synthetic import make_dataset
    from tests.model.test_weights_scoring import make_predictor

    data = make_dataset(tmp_path / "data", train_videos=2, test_videos=1, length=24)
    weights = tmp_path / "w.pt"
    torch.save(make_predictor().weights_blob(), weights)
    cal = tmp_path / "cal.pt"
    r = ffp("calibrate", "--data", str(data), "--weights", str(weights), "--holdout", "1", "--anomaly", "cell_error",
            "--out", str(cal))
    assert r.returncode == 0, r.stderr
    blob = torch.load(cal, weights_only=True)
    assert blob["score_config"]["anomaly"] == "cell_error" and len(blob["calibration"]["cells"]["error_std"]) > 1
    out = tmp_path / "r.json"
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerts: {on_threshold: 1, no_such_field: 2}\n")
    r = ffp("eval", "--data", str(data), "--weights", str(cal), "--out", str(out), "--alerts", str(bad))
    assert r.returncode == 2 and "no_such_field" in r.stderr and not out.exists()
    bad.write_text("alerts: {hold_s: null}\n")  # only a setting that may be off (strong_margin) takes null
    r = ffp("eval", "--data", str(data), "--weights", str(cal), "--out", str(out), "--alerts", str(bad))
    assert r.returncode == 2 and "hold_s must be a number" in r.stderr and not out.exists()
    r = ffp("eval", "--data", str(data), "--weights", str(cal), "--out", str(out), "--fps", "0")
    assert r.returncode == 2 and "--fps" in r.stderr and not out.exists()
    good = tmp_path / "alerts.yaml"
    # a service config's alerts: section
    good.write_text("alerts: {on_threshold: 3.3, off_threshold: 1.0, smoothing_half_life_frames: 3.5, "
                    "strong_margin: null}\n")
    r = ffp("eval", "--data", str(data), "--weights", str(cal), "--out", str(out), "--alerts", str(good),
            "--fps", "25", "--no-plots")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["alerts"]["on_threshold"] == 3.3 and report["alerts_fps"] == 25.0
    assert report["alerts"]["strong_margin"] is None
    assert report["causal_half_life"] == 3.5  # the causal protocol smooths as the alert engine does
    assert [row["on_threshold"] for row in report["threshold_sweep"] if row["operating_point"]] == [3.3]
    assert report["episodes"] == 1 and report["calibrated"] is True


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    """A synthetic data set (2 normal videos of 12 frames, 1 test video) and untrained weights for it."""
    from tests.model.synthetic import make_dataset
    from tests.model.test_weights_scoring import make_predictor

    data = make_dataset(tmp_path / "data", train_videos=2, test_videos=1, length=12)
    weights = tmp_path / "w.pt"
    torch.save(make_predictor().weights_blob(), weights)
    return data, weights


def one_line_error(r: Run, *fragments: str) -> None:
    """Exit status 2 and one error line (argparse puts its usage above it), which says each fragment."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and last.startswith("ffp ") and ": error: " in last, r.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, r.stderr)


def test_numbers_out_of_range_are_refused_by_option_name(small: tuple[Path, Path], tmp_path: Path) -> None:
    data, weights = small
    clip = str(data / "testing" / "frames" / "01")
    for value in ("nan", "inf", "0", "-1", "fast"):
        one_line_error(ffp("score", clip, "--weights", str(weights), "--fps", value), "--fps")
    one_line_error(ffp("eval", "--data", str(data), "--out", str(tmp_path / "r.json"), "--half-life", "-1"),
                   "--half-life")
    for option in ("--footage-minutes", "--train-minutes", "--fps", "--max-footage-mb"):
        args = {"--footage-minutes": "1", "--train-minutes": "1", option: "nan"}
        r = ffp("learn", clip, "--out", str(tmp_path / "l.pt"), *[x for kv in args.items() for x in kv])
        one_line_error(r, option)
    one_line_error(ffp("calibrate", "--data", str(data), "--out", str(tmp_path / "c.pt"), "--holdout", "-1"),
                   "--holdout")
    run = tmp_path / "run"
    for option, value, said in (("--batch-size", "0", "--batch-size must be at least 1"),
                                ("--steps", "-5", "--steps must be 0 or more"),
                                ("--w-int", "-1", "--w-int must be a number >= 0"),
                                ("--max-minutes", "nan", "--max-minutes must be a positive number"),
                                ("--arch", "depth=x", "depth takes a value like 4")):
        one_line_error(ffp("train", "--data", str(data), "--out", str(run), option, value), said)
    assert not run.exists()
    one_line_error(ffp("score", clip, "--weights", str(weights), "--device", "gpu"), "device 'gpu'")


def test_outputs_are_checked_before_the_work_and_leave_nothing(small: tuple[Path, Path], tmp_path: Path) -> None:
    data, weights = small
    clip = str(data / "testing" / "frames" / "01")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    one_line_error(ffp("score", clip, "--weights", str(weights), "--out", str(folder)), "is a folder")
    one_line_error(ffp("score", clip, "--weights", str(weights), "--out", "/proc/x.json"), "cannot write there")
    one_line_error(ffp("eval", "--data", str(data), "--weights", str(weights), "--out", str(folder)), "is a folder")
    one_line_error(ffp("export", str(weights), "--out", str(tmp_path / "e.pt"), "--onnx", str(folder)), "--onnx")
    assert not (tmp_path / "e.pt").exists()
    (tmp_path / "file").write_text("x")
    one_line_error(ffp("train", "--data", str(data), "--out", str(tmp_path / "file")), "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_folder", "data", "file", "w.pt"]
    assert list(folder.iterdir()) == []
    # a refused command makes no folder for its output
    r = ffp("eval", "--data", str(data), "--weights", str(weights), "--labels", str(tmp_path / "none.json"),
            "--out", str(tmp_path / "new" / "r.json"))
    one_line_error(r, "label file not found")
    assert not (tmp_path / "new").exists()
    # a missing folder is made, as for eval and calibrate
    r = ffp("score", clip, "--weights", str(weights), "--threads", "1", "--out", str(tmp_path / "new/s.json"))
    assert r.returncode == 0 and json.loads((tmp_path / "new/s.json").read_text())["frames"], r.stderr


def test_score_refuses_what_post_score_refuses(small: tuple[Path, Path], tmp_path: Path) -> None:
    data, weights = small
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(ffp("score", str(empty), "--weights", str(weights)), "no decodable frames")
    short = tmp_path / "short"
    short.mkdir()
    for f in sorted((data / "testing" / "frames" / "01").iterdir())[:3]:
        (short / f.name).write_bytes(f.read_bytes())
    one_line_error(ffp("score", str(short), "--weights", str(weights)), "needs more than 4 frames", "it has 3")


def test_alert_files_labels_and_weights_are_checked_as_the_service_checks_them(small: tuple[Path, Path],
                                                                               tmp_path: Path) -> None:
    data, weights = small
    clip = str(data / "testing" / "frames" / "01")
    alerts = tmp_path / "alerts.yaml"
    for text, said in (("min_duration_s: -1\n", "min_duration_s (-1.0)"),
                       ("update_interval_s: 0\n", "update_interval_s"), ("warmup_blend: 2\n", "warmup_blend")):
        alerts.write_text(text)
        one_line_error(ffp("score", clip, "--weights", str(weights), "--alerts", str(alerts)), said)
    labels = tmp_path / "labels.json"
    for values in ([0, 255] + [0] * 10, [0, None] + [0] * 10, [0.7] * 12, [[0, 1]] * 6):
        labels.write_text(json.dumps({"01": values}))
        r = ffp("eval", "--data", str(data), "--weights", str(weights), "--labels", str(labels),
                "--out", str(tmp_path / "r.json"))
        one_line_error(r, str(labels), "video 01", "0/1")
    one_line_error(ffp("score", clip, "--weights", str(tmp_path)), "is a folder, not a weights file")
    for meta, said in (("[1, 2]", "--meta must be a JSON object"), ("{nope", "--meta is not JSON")):
        one_line_error(ffp("export", str(weights), "--out", str(tmp_path / "e.pt"), "--meta", meta), said)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "manifest.json").write_text("not json")
    one_line_error(ffp("export", str(weights), "--out", str(shelf / "x.pt"), "--manifest"), "manifest.json")
    assert not (shelf / "x.pt").exists()  # refused before the weights were written


def test_calibrate_never_rewrites_a_file_its_manifest_checksums(small: tuple[Path, Path], tmp_path: Path) -> None:
    from model.checkpoint import record_in_manifest, sha256_file

    data, weights = small
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    listed = shelf / "listed.pt"
    listed.write_bytes(weights.read_bytes())
    record_in_manifest(listed, "lite")
    before = sha256_file(listed)
    r = ffp("calibrate", "--data", str(data), "--weights", str(listed), "--holdout", "1", "--threads", "1")
    one_line_error(r, "is listed with its sha256", "--out")
    assert sha256_file(listed) == before
    r = ffp("calibrate", "--data", str(data), "--weights", str(listed), "--holdout", "1", "--threads", "1",
            "--out", str(shelf / "calibrated.pt"))
    assert r.returncode == 0, r.stderr
    # videos too short for a window: said, not a numpy error
    short = tmp_path / "short"
    (short / "training" / "frames" / "01").mkdir(parents=True)
    for f in sorted((data / "training" / "frames" / "01").iterdir())[:3]:
        (short / "training" / "frames" / "01" / f.name).write_bytes(f.read_bytes())
    r = ffp("calibrate", "--data", str(short), "--weights", str(weights), "--holdout", "0", "--threads", "1",
            "--out", str(tmp_path / "c.pt"))
    one_line_error(r, "nothing to calibrate on")


def test_learn_checks_its_start_before_recording(small: tuple[Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import model.record

    def record(*_: object, **__: object) -> None:
        raise AssertionError("footage was recorded for a start that was refused")

    monkeypatch.setattr(model.record, "record", record)
    data, _ = small
    source = str(data / "training" / "frames")
    base = ["learn", source, "--footage-minutes", "1", "--train-minutes", "1", "--out", str(tmp_path / "l.pt")]
    paper = Path(__file__).resolve().parents[2] / "weights" / "ffp-ped2-paper.pt"  # another architecture
    for init, said in ((str(tmp_path / "none.pt"), "--init: weights file not found"),
                       (str(paper), "does not fit this architecture")):
        one_line_error(ffp(*base, "--init", init), said)
    (tmp_path / "work").write_text("x")
    one_line_error(ffp(*base, "--work", str(tmp_path / "work")), "--work", "is a file")
    assert not (tmp_path / "l.pt").exists()


def test_a_stopped_learn_removes_its_temporary_footage(tmp_path: Path) -> None:
    """SIGTERM (a service or a shell stopping it) ends `ffp learn` as Ctrl-C does: its temporary folder goes."""
    import os
    import signal
    import time

    from tests.model.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", train_videos=1, test_videos=0, length=240)  # enough to train on
    temp = tmp_path / "temp"
    temp.mkdir()
    log = tmp_path / "learn.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "model.cli", "learn", str(data / "training" / "frames"),
                                 "--footage-minutes", "1", "--train-minutes", "5", "--threads", "1",
                                 "--out", str(tmp_path / "l.pt")], env={**os.environ, "TMPDIR": str(temp)},
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300  # bounds a hang only: it trains within seconds on an idle machine
        while not any(temp.glob("ffp-learn-*/run/progress.json")) and proc.poll() is None:  # it trains
            assert time.monotonic() < deadline, "ffp learn never started training"
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 128 + signal.SIGTERM, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(temp.iterdir()) == []
