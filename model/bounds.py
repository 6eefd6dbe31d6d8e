"""The ranges of an engine's numeric parameters, stated once: the parameter dataclass checks them
(`out_of_bounds` in its __post_init__), and the service's settings carry them into their validation and schema.
Every number must be finite: NaN fails every comparison (a NaN threshold would let every score through), and an
infinite threshold lets none."""
from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any

Bounds = dict[str, dict[str, float]]  # field -> {"ge" | "gt" | "le" | "lt": limit}, pydantic's Field keywords

_HOLDS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_SAID = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def out_of_bounds(params: Any, bounds: Bounds) -> list[str]:
    """Each numeric field of the dataclass `params` that is not finite or is outside its bounds, as "name (value)
    must be >= 0"; a None value is not checked."""
    wrong = []
    for f in dataclasses.fields(params):
        name, value = f.name, getattr(params, f.name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if not math.isfinite(value):
            wrong.append(f"{name} ({value}) must be a finite number")
            continue
        limits = bounds.get(name, {})
        failed = [f"{_SAID[k]} {limit:g}" for k, limit in limits.items() if not _HOLDS[k](value, limit)]
        if failed:
            wrong.append(f"{name} ({value}) must be {' and '.join(failed)}")
    return wrong
