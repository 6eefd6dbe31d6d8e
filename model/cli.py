"""The `ffp` command: train-flow | train | eval | calibrate | score | export | serve.

Errors a user can cause (missing paths, bad layouts, wrong or corrupt weights) print one clear line and
exit with status 2; nothing is half-written (every output is written to a temp file and renamed).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .config import ANOMALY_KINDS, DATASET_LOSS_WEIGHTS, PRECISIONS, PRESETS, FlowNetConfig, LossWeights
from .data import DataError

log = logging.getLogger("ffp")


def _guess_dataset(data: Path) -> str:
    name = Path(data).resolve().name.lower()
    return next((d for d in DATASET_LOSS_WEIGHTS if d != "default" and d in name), "default")


def cmd_train_flow(a: argparse.Namespace) -> None:
    from .data import find_videos, load_videos, split_holdout
    from .flownet import train_flownet

    _set_threads(a.threads)
    preset = PRESETS[a.preset]
    cfg = FlowNetConfig(channels=preset.channels, image_size=preset.image_size)
    train_src, _ = split_holdout(find_videos(a.data, "training"), a.holdout)
    videos = load_videos(train_src, preset, progress=True)
    metrics = train_flownet(videos, cfg, Path(a.out), steps=a.steps, max_minutes=a.max_minutes, seed=a.seed)
    print(json.dumps(metrics, indent=2))


def cmd_train(a: argparse.Namespace) -> None:
    from .train import TrainArgs, train

    _set_threads(a.threads)  # validated here like every command's; train() sets it again for library callers
    dataset = a.dataset or _guess_dataset(a.data)
    w = DATASET_LOSS_WEIGHTS[dataset]
    weights = LossWeights(intensity=w.intensity if a.w_int is None else a.w_int,
                          gradient=w.gradient if a.w_grad is None else a.w_grad,
                          flow=0.0 if a.no_flow else (w.flow if a.w_flow is None else a.w_flow),
                          adversarial=0.0 if a.no_adv else (w.adversarial if a.w_adv is None else a.w_adv))
    path = train(TrainArgs(data=Path(a.data), out=Path(a.out), preset=a.preset, dataset=dataset, steps=a.steps,
                           batch_size=a.batch_size, lr_g=a.lr_g, lr_d=a.lr_d, lr_decay_step=a.lr_decay_step,
                           lr_schedule=a.lr_schedule, ema=a.ema,
                           loss_weights=weights, flownet=a.flownet, holdout=a.holdout, val_every=a.val_every,
                           max_minutes=a.max_minutes, seed=a.seed, threads=a.threads, device=a.device,
                           precision=a.precision, resume=not a.no_resume, init=a.init,
                           snapshot_every=a.snapshot_every, pseudo_skip=a.pseudo_skip, pseudo_skips=_skips(a.pseudo_skips),
                           crop=a.crop,
                           overrides=_arch_overrides(a.arch)))
    print(path)


def _skips(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--pseudo-skips {text!r}: expected integers like 3,4,5,6") from None


def _arch_overrides(items: list[str] | None) -> dict[str, Any]:
    """--arch depth=5 --arch base_width=24: ModelConfig fields over the preset (recorded in the weights)."""
    import dataclasses

    from .config import ModelConfig

    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"name"}
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise DataError(f"--arch {item!r}: expected FIELD=VALUE with FIELD one of {sorted(known)}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def _set_threads(threads: int | None) -> None:
    """--threads: torch's CPU threads for this command (None: torch's default, one per core)."""
    if threads is None:
        return
    if threads < 1:
        raise DataError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _load(a: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .predictor import load_predictor

    _set_threads(a.threads)  # before loading: the CPU trace and the precision probe use it
    # auto: on a CPU, the faster of fp32 and bf16 as timed on this host; name one to make numbers comparable
    # across hosts (bf16 moves the AUCs by about 0.001, weights/HISTORY.md)
    return load_predictor(a.weights, device=a.device, precision=None if a.precision == "auto" else a.precision)


def cmd_eval(a: argparse.Namespace) -> None:
    from .evaluate import evaluate

    if a.fps <= 0:
        raise DataError(f"--fps must be positive, got {a.fps}")
    alerts = _alert_params(a.alerts)
    report = evaluate(_load(a), Path(a.data), Path(a.out), labels=a.labels, batch_size=a.batch_size,
                      half_life=a.half_life, alerts=alerts, fps=a.fps, plots=not a.no_plots)
    keys = ("dataset", "frames", "auc_paper_psnr", "auc_paper_smoothed", "auc_paper_local", "auc_combined",
            "auc_causal", "episodes", "episodes_alerted", "event_recall", "false_alarms", "false_alarms_per_hour",
            "delay_s_median", "delay_s_max", "fps")
    print(json.dumps({k: report.get(k) for k in keys}, indent=2))


def _alert_params(path: Path | None):  # type: ignore[no-untyped-def]
    """--alerts FILE: a YAML mapping of alert settings, or a service config whose `alerts:` holds them."""
    from .alerts import AlertParams

    if path is None:
        return AlertParams()
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"--alerts {path}: {e}") from None
    if isinstance(raw, dict) and isinstance(raw.get("alerts"), dict):
        raw = raw["alerts"]
    if not isinstance(raw, dict):
        raise DataError(f"--alerts {path}: expected a mapping of alert settings")
    try:
        return AlertParams(**{k: float(v) for k, v in raw.items()})
    except (TypeError, ValueError) as e:
        raise DataError(f"--alerts {path}: {e}") from None


def cmd_calibrate(a: argparse.Namespace) -> None:
    import dataclasses

    from .checkpoint import atomic_save, safe_torch_load, weights_of
    from .data import find_videos, load_videos, split_holdout
    from .evaluate import calibrate_predictor

    if a.out is None and a.weights is None:
        raise ValueError("give --out (or --weights to update in place): the shipped weights are checksummed")
    predictor = _load(a)
    if a.anomaly is not None:
        predictor = dataclasses.replace(predictor,
                                        score_config=dataclasses.replace(predictor.score_config, anomaly=a.anomaly))
    sources = find_videos(a.data, "training")
    if a.holdout:
        _, sources = split_holdout(sources, a.holdout)
    cal = calibrate_predictor(predictor, load_videos(sources, predictor.config, True),
                              source=f"{a.data} videos {[s.name for s in sources]}")
    out = Path(a.out or a.weights)
    blob = safe_torch_load(Path(a.weights)) if a.weights else predictor.with_calibration(cal).weights_blob()
    target = weights_of(blob)
    target["calibration"] = cal.to_dict()
    if a.anomaly is not None:
        target["score_config"] = predictor.score_config.to_dict()
    atomic_save(blob, out)
    print(json.dumps(cal.to_dict(), indent=2))


def cmd_score(a: argparse.Namespace) -> None:
    from .clip import score_frames
    from .data import VideoSource, iter_frames
    from .scoring import CausalSmoother

    predictor = _load(a)
    path = Path(a.video)
    if not path.exists():
        raise DataError(f"video not found: {path}")
    rows = []
    smoother = CausalSmoother()
    for f in score_frames(predictor, iter_frames(VideoSource(path.stem, path)), batch_size=a.batch_size):
        z = None if f.metrics is None else f.metrics["score"]
        rows.append({"index": f.index, **(f.metrics or {}), "smoothed": None if z is None else smoother.update(z)})
    text = json.dumps({"video": str(path), "weights": str(predictor.path), "frames": rows}, indent=1)
    if a.out:
        tmp = Path(a.out + ".tmp")
        tmp.write_text(text)
        tmp.replace(a.out)
    else:
        print(text)


def cmd_export(a: argparse.Namespace) -> None:
    from .checkpoint import atomic_save, half_generator, record_in_manifest, sha256_file
    from .predictor import load_predictor

    predictor = load_predictor(a.checkpoint, device="cpu")
    blob = predictor.weights_blob()
    blob["meta"] = {**blob["meta"], **json.loads(a.meta or "{}")}
    if a.half:  # half the file; loading casts back to fp32 (the paper preset: 31 MB -> 15 MB)
        blob = half_generator(blob)
    out = Path(a.out)
    atomic_save(blob, out)
    if a.manifest:
        entry = record_in_manifest(out, predictor.config.name)
        print(json.dumps({str(out): entry}, indent=2))
    else:
        print(out, sha256_file(out))
    if a.onnx:
        _export_onnx(predictor, Path(a.onnx))


def cmd_average(a: argparse.Namespace) -> None:
    from .checkpoint import atomic_save, average_weights

    atomic_save(average_weights([Path(w) for w in a.weights]), Path(a.out))
    print(a.out, "(uncalibrated: run `ffp calibrate --weights", a.out, "--data ... --holdout N`)")


def _export_onnx(predictor, path: Path) -> None:  # type: ignore[no-untyped-def]
    import warnings

    import torch

    try:
        import onnx  # the exporter needs it; say so before it fails deep inside torch
    except ImportError as e:
        from .checkpoint import WeightsError

        raise WeightsError("--onnx needs the onnx package: pip install 'ffp[onnx]'") from e
    cfg = predictor.config
    dummy = torch.zeros(1, cfg.num_frames * cfg.channels, *cfg.image_size)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on the generator's shape check
        # The TorchScript-based exporter: no onnxscript needed, and a dynamic batch axis.
        torch.onnx.export(predictor.generator.float().cpu(), (dummy,), str(tmp), input_names=["past"],
                          output_names=["prediction"], dynamic_axes={"past": {0: "batch"}, "prediction": {0: "batch"}},
                          dynamo=False)
    # The graph maps k stacked frames to the next one; how to cut those frames from a video is not in it.
    # Store the model config beside it (num_frames, frame_stride, channels, image_size), so an ONNX consumer
    # does not have to guess the stride or the input size.
    model = onnx.load(str(tmp))
    model.metadata_props.add(key="ffp.config", value=json.dumps(cfg.to_dict()))
    onnx.save(model, str(tmp))
    tmp.replace(path)
    print(path)


def cmd_serve(a: argparse.Namespace, rest: list[str]) -> None:
    # model/ never imports service/: hand over to it as a separate program with the same arguments.
    os.execvp(sys.executable, [sys.executable, "-m", "service", *rest])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ffp", description="Video anomaly detection by future frame prediction.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser, weights: bool = True) -> None:
        if weights:
            sp.add_argument("--weights", help="weights or checkpoint file (default: the shipped Ped2 weights)")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
        sp.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
        if weights:
            sp.add_argument("--precision", default="auto", choices=PRECISIONS,
                            help="inference arithmetic (auto: on a CPU the faster of fp32 and bf16, timed on "
                                 "this host; on a GPU bf16, or fp16 where bf16 is missing)")

    sp = sub.add_parser("train-flow", help="distil OpenCV DIS flow into the small differentiable flow network")
    sp.add_argument("--data", required=True, help="dataset root (uses its training videos)")
    sp.add_argument("--out", required=True, help="flow-network file to write")
    sp.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    sp.add_argument("--steps", type=int, default=3000)
    sp.add_argument("--holdout", type=int, default=2)
    sp.add_argument("--max-minutes", type=float)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--threads", type=int)

    sp = sub.add_parser("train", help="train the future-frame predictor on normal video")
    sp.add_argument("--data", required=True, help="dataset root with training/ (normal videos only)")
    sp.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv (resumes from it)")
    sp.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    sp.add_argument("--dataset", choices=sorted(DATASET_LOSS_WEIGHTS), help="loss-weight and lr defaults "
                    "(default: guessed from the folder name)")
    sp.add_argument("--arch", action="append", metavar="FIELD=VALUE",
                    help="override a field of the preset, e.g. --arch depth=5 (repeatable)")
    sp.add_argument("--steps", type=int, default=20000)
    sp.add_argument("--batch-size", type=int, default=4)
    sp.add_argument("--lr-g", type=float)
    sp.add_argument("--lr-d", type=float)
    sp.add_argument("--lr-decay-step", type=int, default=7000)
    sp.add_argument("--lr-schedule", default="step", choices=["step", "cosine"],
                    help="step: x0.1 at --lr-decay-step; cosine: from the base lr to 0 at --steps")
    sp.add_argument("--ema", type=float, metavar="DECAY",
                    help="validate, keep and ship an exponential moving average of G's weights (e.g. 0.999)")
    for name in ("int", "grad", "flow", "adv"):
        sp.add_argument(f"--w-{name}", type=float, help=f"lambda_{name} (default: the dataset's)")
    sp.add_argument("--no-flow", action="store_true", help="drop the flow loss (ablation)")
    sp.add_argument("--no-adv", action="store_true", help="drop the adversarial loss (ablation)")
    sp.add_argument("--flownet", type=Path, default=Path("weights/flownet-lite.pt"))
    sp.add_argument("--holdout", type=int, default=2, help="normal training videos held out for validation")
    sp.add_argument("--val-every", type=int, default=500)
    sp.add_argument("--max-minutes", type=float)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--threads", type=int)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="training arithmetic (auto: fp32 on a CPU, bf16 or fp16 autocast on a GPU)")
    sp.add_argument("--snapshot-every", type=int, metavar="N",
                    help="also write the shipped weights every N steps to <out>/snapshots/step-NNNNNNN.pt")
    sp.add_argument("--pseudo-skip", type=float, default=0.0, metavar="SHARE",
                    help="experimental: replace this share of training windows by skip-frame pseudo-anomalies (frames "
                         "--pseudo-skips x apart, target: the last past frame). On Ped2 it did not help and can collapse "
                         "the generator into copying the last frame (weights/HISTORY.md); watch the held-out PSNR")
    sp.add_argument("--pseudo-skips", default="3,4,5,6", help="the pseudo-anomalies' speed-ups, comma separated")
    sp.add_argument("--crop", type=int, metavar="PX",
                    help="train on random PX x PX crops of the windows (a multiple of the U-Net's pooling, e.g. 64 "
                         "for lite): cheaper steps; validation, scoring and the shipped model see whole frames")
    sp.add_argument("--no-resume", action="store_true")
    sp.add_argument("--init", type=Path, help="start from these weights or checkpoint (same architecture; the "
                    "image size may differ): fine-tuning; ignored when --out has a checkpoint to resume")

    sp = sub.add_parser("eval", help="frame-level AUC (paper, combined, causal) and event-level alert numbers")
    sp.add_argument("--data", required=True, help="dataset root with testing/ and labels")
    sp.add_argument("--out", required=True, help="JSON report (ROC and timeline PNGs are written beside it)")
    sp.add_argument("--labels", type=Path, help="label file (default: found in --data)")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--half-life", type=float, default=2.0, help="causal EMA half-life in frames")
    sp.add_argument("--alerts", type=Path, help="alert settings YAML (a mapping, or a service config's alerts:) "
                    "for the event-level numbers; default: the service's defaults")
    sp.add_argument("--fps", type=float, default=10.0, help="frame rate the test videos are replayed at through "
                    "the alert engine (UCSD Ped2: 10)")
    sp.add_argument("--no-plots", action="store_true")
    common(sp)

    sp = sub.add_parser("calibrate", help="store score statistics on normal footage with the weights")
    sp.add_argument("--data", required=True, help="dataset root; its training/ videos are normal footage")
    sp.add_argument("--holdout", type=int, default=2, help="use the last N training videos (0 = all)")
    sp.add_argument("--out", help="file to write (default: update --weights in place)")
    sp.add_argument("--anomaly", choices=ANOMALY_KINDS, help="how the image cells become the raw anomaly score "
                    "(stored in the weights' score config; default: keep the weights' own)")
    common(sp)

    sp = sub.add_parser("score", help="score a video file or a folder of frames, per frame, as JSON")
    sp.add_argument("video")
    sp.add_argument("--out", help="JSON file (default: stdout)")
    sp.add_argument("--batch-size", type=int, default=8)
    common(sp)

    sp = sub.add_parser("export", help="write a slim weights file from a checkpoint (and its sha256)")
    sp.add_argument("checkpoint")
    sp.add_argument("--out", required=True)
    sp.add_argument("--manifest", action="store_true", help="record sha256 and preset in weights/manifest.json")
    sp.add_argument("--meta", help="JSON object merged into the file's meta")
    sp.add_argument("--onnx", help="also export the generator to this ONNX file")
    sp.add_argument("--half", action="store_true", help="store the generator's weights in float16 (half the bytes)")

    sp = sub.add_parser("average", help="mean of several weights files' generators (e.g. the ends of training cycles)")
    sp.add_argument("weights", nargs="+", help="weights files or checkpoints of one architecture")
    sp.add_argument("--out", required=True)

    sub.add_parser("serve", help="run the service (arguments go to `python -m service`)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        cmd_serve(argparse.Namespace(), argv[1:])
        return
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .checkpoint import WeightsError

    handlers = {"train-flow": cmd_train_flow, "train": cmd_train, "eval": cmd_eval, "calibrate": cmd_calibrate,
                "score": cmd_score, "export": cmd_export, "average": cmd_average}
    try:
        handlers[args.cmd](args)
    except (DataError, WeightsError, ValueError) as e:
        print(f"ffp {args.cmd}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
