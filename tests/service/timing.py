"""Deadlines of the service tests, scaled for a busy machine.

Every wait in these tests is on a condition and returns as soon as it holds; its deadline only bounds a
failure. FFP_TEST_TIME_SCALE multiplies those deadlines, the tests' timeouts and the slack allowed around a
measured delay (default 3: the suite shares 2 cores with other work; 1 restores the tight values).
"""
from __future__ import annotations

import os

TIME_SCALE = float(os.environ.get("FFP_TEST_TIME_SCALE", "3"))


def scaled(seconds: float) -> float:
    """A deadline or a slack, scaled by FFP_TEST_TIME_SCALE (never below the value itself)."""
    return seconds * max(1.0, TIME_SCALE)
