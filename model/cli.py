"""The `ffp` command: train-flow | train | learn | eval | calibrate | score | export | serve.

Errors a user can cause (missing paths, bad layouts, wrong or corrupt weights) print one clear line and
exit with status 2; nothing is half-written (every output is written to a temp file and renamed).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import types
import typing
from pathlib import Path
from typing import Any

from .cli_args import build_parser, output_file, output_folder
from .config import PRESETS, FlowNetConfig, ModelConfig, TrainConfig
from .data import DataError

log = logging.getLogger("ffp")


def cmd_train_flow(a: argparse.Namespace) -> None:
    from .data import find_videos, load_videos, split_holdout
    from .flownet import train_flownet

    _set_threads(a.threads)
    out = output_file(a.out)
    preset = PRESETS[a.preset]
    cfg = FlowNetConfig(channels=preset.channels, image_size=preset.image_size)
    train_src, _ = split_holdout(find_videos(a.data, "training"), a.holdout)
    videos = load_videos(train_src, preset, progress=True)
    metrics = train_flownet(videos, cfg, out, steps=a.steps, max_minutes=a.max_minutes, seed=a.seed)
    print(json.dumps(metrics, indent=2))


def cmd_train(a: argparse.Namespace) -> None:
    from .train import train

    path = train(train_config(a))
    print(path)


def train_config(a: argparse.Namespace) -> TrainConfig:
    """TrainConfig's defaults, then the recipe's values, then the options given on the command line."""
    from .recipes import load_recipe

    given = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(a, f.name)}
    values = load_recipe(a.recipe) if a.recipe else {}
    arch = {**values.get("arch", {}), **_arch_overrides(given.pop("arch", None))}
    values = {**values, **given, "arch": arch}
    if a.no_flow:
        values["w_flow"] = 0.0
    if a.no_adv:
        values["w_adv"] = 0.0
    config = TrainConfig(**values)
    output_folder(config.out)  # a run writes a folder: last.pt, best.pt, metrics.csv
    _set_threads(config.threads)  # before the data loads; train() sets it again for library callers
    return config


def cmd_learn(a: argparse.Namespace) -> None:
    from contextlib import nullcontext

    from .checkpoint import atomic_save, safe_torch_load
    from .learn import check_init, learn
    from .recipes import recipe_model
    from .record import record

    _set_threads(a.threads)
    out = output_file(a.out)
    config = recipe_model(a.recipe)
    check_init(a.init, a.recipe)  # before minutes of footage are recorded for it
    if a.work:
        output_folder(a.work, "--work")
    # --work keeps the footage and the run (a second call resumes from them); by default both are temporary
    with nullcontext(a.work) if a.work else tempfile.TemporaryDirectory(prefix="ffp-learn-") as work:
        writer = record(a.source, Path(work) / "footage", config, fps=a.fps, footage_minutes=a.footage_minutes,
                        max_bytes=int(a.max_footage_mb * 2**20))
        if writer.static_reason is not None:
            raise DataError(f"footage refused: {writer.static_reason}")
        log.info("footage: %d frames%s", writer.frames, f" ({writer.full_reason})" if writer.full_reason else "")
        import torch

        final = learn(Path(work) / "footage", Path(work) / "run", train_minutes=a.train_minutes,
                      threads=a.threads or torch.get_num_threads(), init=a.init, recipe=a.recipe)
        blob = safe_torch_load(final)
        atomic_save(blob, out)
    meta = blob["meta"]
    print(json.dumps({"weights": str(out), **{k: meta.get(k) for k in ("steps", "steps_planned", "minutes",
                                                                       "heldout_psnr", "footage")}}, indent=2))


def _arch_overrides(items: list[str] | None) -> dict[str, Any]:
    """--arch depth=5 --arch base_width=24: ModelConfig fields over the preset (recorded in the weights)."""
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
        parsed = tuple(parsed) if isinstance(parsed, list) else parsed
        default = getattr(ModelConfig(), key)
        fits = (all(type(x) is int for x in parsed) if isinstance(default, tuple) and isinstance(parsed, tuple)
                else type(parsed) is type(default))
        if not fits:
            raise DataError(f"--arch {item!r}: {key} takes a value like {json.dumps(default)}")
        out[key] = parsed
    return out


def default_scoring_threads() -> int:
    """Torch threads for the scoring commands when --threads is not given: half the cores this process may run
    on, at least 1. With one thread per core, a core held by another process stalls every parallel section
    (OpenMP threads wait for the slowest one): `ffp score` of the demo clip beside a process that burns one of
    two cores took 58-77 s with two threads against 20-27 s with one (README, *The numbers*)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


def _set_threads(threads: int | None) -> None:
    """--threads: torch's CPU threads for this command (None: torch's default, one per core)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)


def _load(a: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .predictor import load_predictor

    # before loading: the CPU trace and the precision probe use it
    _set_threads(default_scoring_threads() if a.threads is None else a.threads)
    # auto: on a CPU, the faster of fp32 and bf16 as timed on this host; name one to make numbers comparable
    # across hosts (bf16 moves the AUCs by about 0.001, docs/research/HISTORY.md)
    return load_predictor(a.weights, device=a.device, precision=None if a.precision == "auto" else a.precision)


def cmd_eval(a: argparse.Namespace) -> None:
    from .evaluate import evaluate

    alerts = _alert_params(a.alerts)
    out = output_file(a.out)
    report = evaluate(_load(a), Path(a.data), out, labels=a.labels, batch_size=a.batch_size,
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
    optional = {f.name for f in dataclasses.fields(AlertParams) if f.default is None}  # null turns these off
    values: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            values[k] = None if v is None and k in optional else float(v)
        except (TypeError, ValueError):
            raise DataError(f"--alerts {path}: {k} must be a number, got {v!r}") from None
    try:
        return AlertParams(**values)
    except (TypeError, ValueError) as e:
        raise DataError(f"--alerts {path}: {e}") from None


def cmd_calibrate(a: argparse.Namespace) -> None:
    import dataclasses

    from .checkpoint import atomic_save, manifest_beside, read_manifest, safe_torch_load, weights_of
    from .data import find_videos, load_videos, split_holdout
    from .evaluate import calibrate_predictor

    if a.out is None and a.weights is None:
        raise ValueError("give --out (or --weights to update in place): the shipped weights are checksummed")
    option = "--out" if a.out else "--weights"
    out = output_file(a.out or a.weights, option)
    listed = manifest_beside(out)
    if out.is_file() and out.name in read_manifest(listed):
        raise DataError(f"{option} {out} is listed with its sha256 in {listed}: write the calibrated weights to "
                        "another file" + ("" if a.out else " with --out"))
    predictor = _load(a)
    if a.anomaly is not None:
        predictor = dataclasses.replace(predictor,
                                        score_config=dataclasses.replace(predictor.score_config, anomaly=a.anomaly))
    sources = find_videos(a.data, "training")
    if a.holdout:
        _, sources = split_holdout(sources, a.holdout)
    cal = calibrate_predictor(predictor, load_videos(sources, predictor.config, True),
                              source=f"{a.data} videos {[s.name for s in sources]}")
    blob = safe_torch_load(Path(a.weights)) if a.weights else predictor.with_calibration(cal).weights_blob()
    target = weights_of(blob)
    target["calibration"] = cal.to_dict()
    if a.anomaly is not None:
        target["score_config"] = predictor.score_config.to_dict()
    atomic_save(blob, out)
    print(json.dumps(cal.to_dict(), indent=2))


def cmd_score(a: argparse.Namespace) -> None:
    from .clip import CLIP_FALLBACK_FPS, ClipAlerts, clip_event, score_frames, unscorable
    from .data import VideoSource, iter_frames, video_fps
    from .footage import write_json_atomic

    path = Path(a.video)
    if not path.exists():
        raise DataError(f"video not found: {path}")
    out = output_file(a.out) if a.out else None
    params = _alert_params(a.alerts)
    predictor = _load(a)
    # POST /v1/score's shape: frames with index, time (seconds from the clip's start = index / fps), the metrics
    # and smoothed; events raised by the service's alert engine over the clip's timeline, in the live events'
    # fields. A folder of frames has no rate: --fps, else the service's fallback for clips.
    fps = a.fps or video_fps(path) or CLIP_FALLBACK_FPS
    rows = []
    timeline = ClipAlerts(predictor.calibration, params, fps)
    events: dict[str, dict[str, Any]] = {}
    for f in score_frames(predictor, iter_frames(VideoSource(path.stem, path)), batch_size=a.batch_size):
        if f.metrics is None:
            rows.append({"index": f.index, "time": round(f.index / fps, 4), "smoothed": None})
            continue
        # score and smoothed are what the alert engine compares, as POST /v1/score reports them
        z, updates = timeline.update(f.index, float(typing.cast(float, f.metrics["anomaly"])))
        events.update((u.event_id, clip_event(u)) for u in updates)
        rows.append({"index": f.index, "time": round(f.index / fps, 4), **f.metrics, "score": z,
                     "smoothed": timeline.engine.smoothed})
    reason = unscorable(len(rows), predictor.num_frames)
    if reason is not None:  # what POST /v1/score answers for the same clip
        raise DataError(f"{path}: {reason}")
    events.update((u.event_id, clip_event(u)) for u in timeline.close())
    result = {"video": str(path), "weights": str(predictor.path), "fps": fps, "frames": rows,
              "events": sorted(events.values(), key=lambda e: e["start_ts"])}
    if out is not None:
        write_json_atomic(out, result, mode=0o644)  # scores are meant to be shared, like the weights
    else:
        print(json.dumps(result, indent=1))


def cmd_export(a: argparse.Namespace) -> None:
    from .checkpoint import atomic_save, half_generator, manifest_beside, read_manifest, record_in_manifest, sha256_file
    from .predictor import load_predictor

    out = output_file(a.out)
    onnx = output_file(a.onnx, "--onnx") if a.onnx else None
    try:
        meta = json.loads(a.meta or "{}")
    except json.JSONDecodeError as e:
        raise DataError(f"--meta is not JSON: {e}") from None
    if not isinstance(meta, dict):
        raise DataError("--meta must be a JSON object, e.g. '{\"note\": \"x\"}'")
    if a.manifest:
        read_manifest(manifest_beside(out))  # a manifest it cannot update is said before the weights are written
    predictor = load_predictor(a.checkpoint, device="cpu")
    blob = predictor.weights_blob()
    blob["meta"] = {**blob["meta"], **meta}
    if a.half:  # half the file; loading casts back to fp32 (the paper preset: 31 MB -> 15 MB)
        blob = half_generator(blob)
    atomic_save(blob, out)
    if a.manifest:
        entry = record_in_manifest(out, predictor.config.name)
        print(json.dumps({str(out): entry}, indent=2))
    else:
        print(out, sha256_file(out))
    if onnx is not None:
        _export_onnx(predictor, onnx)


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
    path.parent.mkdir(parents=True, exist_ok=True)
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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        cmd_serve(argparse.Namespace(), argv[1:])
        return
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # a video OpenCV cannot open is said in ffp's one line, not FFmpeg's own first
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    from .checkpoint import WeightsError

    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if on_main_thread else None
    handlers = {"train-flow": cmd_train_flow, "train": cmd_train, "learn": cmd_learn, "eval": cmd_eval,
                "calibrate": cmd_calibrate, "score": cmd_score, "export": cmd_export}
    try:
        handlers[args.cmd](args)
    except (DataError, WeightsError, ValueError) as e:
        print(f"ffp {args.cmd}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a path the system refuses (permissions, a full disk, a folder where a file goes)
        where = f": {e.filename}" if e.filename else ""
        print(f"ffp {args.cmd}: error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _stop(signum: int, _frame: types.FrameType | None) -> None:
    """SIGTERM ends a command as Ctrl-C does: on the way out its temporary folders and files are removed."""
    sys.exit(128 + signum)


if __name__ == "__main__":
    main()
