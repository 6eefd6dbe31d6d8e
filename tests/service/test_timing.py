"""Service test deadlines scale with FFP_TEST_TIME_SCALE: timeout marks and waits, never below their value."""
from __future__ import annotations

import pytest
from timing import TIME_SCALE, scaled


@pytest.mark.timeout(7)
def test_timeout_marks_are_scaled(request: pytest.FixtureRequest) -> None:
    mark = request.node.get_closest_marker("timeout")
    assert mark is not None and mark.args[0] == pytest.approx(7 * max(1.0, TIME_SCALE))


def test_scaled_never_shortens_a_deadline() -> None:
    assert scaled(2.0) >= 2.0 and scaled(2.0) == pytest.approx(2.0 * max(1.0, TIME_SCALE))
