"""The `ffp` command line: its parser (one subparser per command; `ffp train`'s options come from TrainConfig's
fields), the argparse types of its numbers (model.config.NUMBER_RULES) and the checks of its output paths, made
before a command does any work."""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ANOMALY_KINDS, NUMBER_RULES, PRECISIONS, PRESETS, TrainConfig
from .data import DataError


def _number_type(rule: str, kind: type[int] | type[float]) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` that keeps model.config.NUMBER_RULES[rule], else argparse's error."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a{' whole' if kind is int else ''} number, got {text!r}"
                                             ) from None
        holds, wording = NUMBER_RULES[rule]
        if not holds(value):
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text!r}")
        return value
    parse.__name__ = rule
    return parse


positive, non_negative = _number_type("positive", float), _number_type("non_negative", float)
at_least_one, count = _number_type("at_least_one", int), _number_type("count", int)


def output_file(path: str | Path, option: str = "--out") -> Path:
    """An output file, checked before any work is done: not a folder, and the nearest folder above it that exists
    takes a new file (one is made there and removed; missing folders are made when the output is written).
    Raises DataError naming the option."""
    out = Path(path)
    if out.is_dir():
        raise DataError(f"{option} {out} is a folder; give a file path")
    _writable_where(out.absolute().parent, out, option)
    return out


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """An output folder, checked as output_file checks a file: not a file, and writable where it is to be made."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DataError(f"{option} {out} is a file; give a folder")
    _writable_where(out.absolute(), out, option)
    return out


def _writable_where(folder: Path, out: Path, option: str) -> None:
    """`folder`, or the nearest folder above it that exists, takes a new file."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a folder", str(existing))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ffp-", suffix=".probe"):
            pass
    except OSError as e:
        raise DataError(f"{option} {out}: cannot write there ({e.strerror or e})") from None


def add_train_options(sp: argparse.ArgumentParser) -> None:
    """`ffp train`'s options, one per TrainConfig field (its help text in the field's metadata). Options not
    given stay out of the namespace, so that a recipe's value is only overridden by an option actually given."""
    from .recipes import recipe_names

    sp.add_argument("--recipe", metavar="NAME|FILE", help=f"start from a training recipe: one of {recipe_names()} "
                    "(model/recipes/) or a YAML file of these options; the options given override its values")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        extra = dict(f.metadata)
        text = extra.pop("help")
        if not extra.pop("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]  # `X | None` (an optional value) gives X
        kind = hint if not isinstance(hint, types.UnionType) else next(k for k in typing.get_args(hint)
                                                                          if k is not type(None))
        if f.default is not dataclasses.MISSING and f.default is not None and kind is not bool:
            text += f" (default: {f.default})"
        if f.name == "arch":
            sp.add_argument(flag, action="append", help=text, default=argparse.SUPPRESS, **extra)
        elif kind is bool:  # a switch that turns the default off
            sp.add_argument(f"--no-{f.name.replace('_', '-')}" if f.default else flag, dest=f.name, help=text,
                            action="store_false" if f.default else "store_true", default=argparse.SUPPRESS)
        else:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            sp.add_argument(flag, type=kind, required=required, help=text, default=argparse.SUPPRESS, **extra)
        if f.name == "w_adv":  # shorthands for a weight of 0, applied after the recipe and the --w-* options
            sp.add_argument("--no-flow", action="store_true", help="drop the flow loss (= --w-flow 0)")
            sp.add_argument("--no-adv", action="store_true", help="drop the adversarial loss (= --w-adv 0)")


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's, through the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ffp")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ffp", description="Video anomaly detection by future frame prediction.")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser, weights: bool = True) -> None:
        if weights:
            sp.add_argument("--weights", help="weights or checkpoint file (default: the shipped Ped2 weights)")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
        sp.add_argument("--threads", type=at_least_one, help="torch CPU threads (default: half the cores, at least 1, "
                        "so that another busy process does not stall scoring)")
        if weights:
            sp.add_argument("--precision", default="auto", choices=PRECISIONS,
                            help="inference arithmetic (auto: on a CPU the faster of fp32 and bf16, timed on "
                                 "this host; on a GPU bf16, or fp16 where bf16 is missing)")

    sp = sub.add_parser("train-flow", help="distil OpenCV DIS flow into the small differentiable flow network")
    sp.add_argument("--data", required=True, help="dataset root (uses its training videos)")
    sp.add_argument("--out", required=True, help="flow-network file to write")
    sp.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    sp.add_argument("--steps", type=at_least_one, default=3000)
    sp.add_argument("--holdout", type=count, default=2)
    sp.add_argument("--max-minutes", type=positive)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--threads", type=at_least_one)

    sp = sub.add_parser("train", help="train the future-frame predictor on normal video")
    add_train_options(sp)

    sp = sub.add_parser("learn", help="record a camera, a video or a folder of videos and learn its own model")
    sp.add_argument("source", help="rtsp:// or http:// URL, a video file, a folder of videos (each one a segment) "
                                   "or of frame folders (taken as shot at --fps)")
    sp.add_argument("--footage-minutes", type=positive, required=True, help="minutes of footage to record (at --fps)")
    sp.add_argument("--train-minutes", type=positive, required=True, help="training budget, wall clock")
    sp.add_argument("--out", required=True, help="weights file to write (calibrated on the held-out footage)")
    sp.add_argument("--fps", type=positive, default=10.0, help="frames kept per second of video (default 10)")
    sp.add_argument("--init", default="none", help="none (from scratch, default), shipped (the Ped2 lite weights) "
                                                   "or a weights file of the same architecture")
    sp.add_argument("--recipe", default="camera-lite", help="training recipe (default camera-lite)")
    sp.add_argument("--work", help="folder for the footage and the run, kept (a second call resumes from it); "
                                   "default: a temporary one")
    sp.add_argument("--max-footage-mb", type=positive, default=4096.0, help="disk cap of the footage (default 4096)")
    sp.add_argument("--threads", type=at_least_one, help="torch CPU threads (default: torch's, one per core)")

    sp = sub.add_parser("eval", help="frame-level AUC (paper, combined, causal) and event-level alert numbers")
    sp.add_argument("--data", required=True, help="dataset root with testing/ and labels")
    sp.add_argument("--out", required=True, help="JSON report (ROC and timeline PNGs are written beside it)")
    sp.add_argument("--labels", type=Path, help="label file (default: found in --data)")
    sp.add_argument("--batch-size", type=at_least_one, default=16)
    sp.add_argument("--half-life", type=non_negative, help="causal EMA half-life in frames for the causal "
                    "protocols (default: the alert settings' smoothing_half_life_frames)")
    sp.add_argument("--alerts", type=Path, help="alert settings YAML (a mapping, or a service config's alerts:) "
                    "for the event-level numbers; default: the service's defaults")
    sp.add_argument("--fps", type=positive, default=10.0, help="frame rate the test videos are replayed at through "
                    "the alert engine (UCSD Ped2: 10)")
    sp.add_argument("--no-plots", action="store_true")
    common(sp)

    sp = sub.add_parser("calibrate", help="store score statistics on normal footage with the weights")
    sp.add_argument("--data", required=True, help="dataset root; its training/ videos are normal footage")
    sp.add_argument("--holdout", type=count, default=2, help="use the last N training videos (0 = all)")
    sp.add_argument("--out", help="file to write (default: update --weights in place)")
    sp.add_argument("--anomaly", choices=ANOMALY_KINDS, help="how the image cells become the raw anomaly score "
                    "(stored in the weights' score config; default: keep the weights' own)")
    common(sp)

    sp = sub.add_parser("score", help="score a video file or a folder of frames, per frame, as JSON")
    sp.add_argument("video")
    sp.add_argument("--out", help="JSON file (default: stdout)")
    sp.add_argument("--batch-size", type=at_least_one, default=8)
    sp.add_argument("--fps", type=positive, help="frame rate for the frames' times (default: the video's, or 25)")
    sp.add_argument("--alerts", type=Path, help="alert settings YAML (a mapping, or a service config's alerts:) "
                    "for the events; default: the service's defaults")
    common(sp)

    sp = sub.add_parser("export", help="write a slim weights file from a checkpoint (and its sha256)")
    sp.add_argument("checkpoint")
    sp.add_argument("--out", required=True)
    sp.add_argument("--manifest", action="store_true", help="record sha256 and preset in weights/manifest.json")
    sp.add_argument("--meta", help="JSON object merged into the file's meta")
    sp.add_argument("--onnx", help="also export the generator to this ONNX file")
    sp.add_argument("--half", action="store_true", help="store the generator's weights in float16 (half the bytes)")

    sub.add_parser("serve", help="run the service (arguments go to `python -m service`)", add_help=False)
    return p
