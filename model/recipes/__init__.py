"""Training recipes as data: a recipe is a YAML file of TrainConfig fields (model/config.py), packaged here.

`ffp train --recipe ped2-lite --data D --out R` trains with the recipe's values over TrainConfig's defaults;
options given on the command line override the recipe. A recipe names no paths of a machine (data, out).
"""
from __future__ import annotations

import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..config import ModelConfig, TrainConfig
from ..data import DataError

RECIPES_DIR = Path(__file__).resolve().parent
NOT_IN_RECIPES = frozenset({"data", "out", "progress"})  # a machine's paths and the terminal, not a recipe


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """A packaged recipe by name (`ped2-lite`), or a YAML file by path."""
    packaged = RECIPES_DIR / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise DataError(f"unknown recipe {name!r}: choose one of {recipe_names()} or give a .yaml file")


def load_recipe(name: str) -> dict[str, Any]:
    """The recipe's TrainConfig values, typed as the fields are (a YAML `2e-4` is a string to PyYAML)."""
    path = recipe_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"recipe {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"recipe {path}: expected a mapping of TrainConfig fields")
    allowed = {f.name for f in fields(TrainConfig)} - NOT_IN_RECIPES
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(f"recipe {path}: unknown keys {unknown}; known: {sorted(allowed)}")
    hints = typing.get_type_hints(TrainConfig)
    return {key: _typed(path, key, value, hints[key]) for key, value in raw.items()}


def _typed(path: Path, key: str, value: Any, hint: Any) -> Any:
    optional = isinstance(hint, types.UnionType)  # `X | None`: the only unions TrainConfig has
    kind = next(k for k in typing.get_args(hint) if k is not type(None)) if optional else hint
    kind = typing.get_origin(kind) or kind
    if value is None and optional:
        return None
    try:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
        if kind is Path and isinstance(value, str):
            return Path(value)
        if kind is dict and isinstance(value, dict):
            return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    except (TypeError, ValueError):
        pass
    raise DataError(f"recipe {path}: {key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def recipe_model(name: str) -> ModelConfig:
    """The model a recipe trains: a camera's footage is recorded at this config's size and channels."""
    from ..train import plan

    return plan(TrainConfig(data=Path("."), out=Path("."), **load_recipe(name))).model
