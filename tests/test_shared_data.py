"""Tests that need ../shared skip, naming the path, unless FFP_REQUIRE_DATA=1 makes them fail."""
from __future__ import annotations

import pytest

from tests.conftest import SHARED, require_shared


def test_missing_shared_data_skips_with_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FFP_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match=str(SHARED / "no-such-set")):
        require_shared("no-such-set")


def test_missing_shared_data_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFP_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match=str(SHARED / "no-such-set")):
        require_shared("no-such-set")


def test_present_shared_data_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.conftest.SHARED", SHARED.parent)
    assert require_shared(SHARED.name) == SHARED.parent / SHARED.name
