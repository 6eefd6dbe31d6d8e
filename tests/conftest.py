"""Test-wide settings and the one rule for tests that need the shared data sets.

Tests run on 2-core machines next to other work: one torch thread per process avoids OpenMP threads spinning
against each other (which slows small models by 10x under contention).

Tests that read ../shared (the UCSD Ped2 data set and the label files, beside the repository) take the
`shared_data` fixture: without the folder they skip and name the path they looked for; with FFP_REQUIRE_DATA=1
(set by .ci/run) they fail instead, so CI never passes by skipping them.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def require_shared(relative: str) -> Path:
    """SHARED / relative, or skip (fail under FFP_REQUIRE_DATA=1) naming the path when it is missing."""
    path = SHARED / relative
    if not path.exists():
        reason = (f"needs the shared data at {path} (not found; ../shared beside the repository, "
                  "FFP_REQUIRE_DATA=1 turns this skip into a failure)")
        if os.environ.get("FFP_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def shared_data() -> Callable[[str], Path]:
    """shared_data("datasets/ped2") -> the path under ../shared, or a skip that names it."""
    return require_shared


@pytest.fixture
def ped2(shared_data: Callable[[str], Path]) -> Path:
    return shared_data("datasets/ped2")
