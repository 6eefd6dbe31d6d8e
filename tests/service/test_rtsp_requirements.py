"""The RTSP tests skip with what to install where GStreamer's RTSP server is missing, and fail under CI."""
from __future__ import annotations

import conftest
import pytest


def test_missing_gstreamer_skips_naming_the_apt_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "gstreamer_missing", lambda: "No module named 'gi'")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as e:
        conftest.require_rtsp()
    assert "No module named 'gi'" in str(e.value) and conftest.GSTREAMER_APT in str(e.value)
    assert "gir1.2-gst-rtsp-server-1.0" in conftest.GSTREAMER_APT


def test_missing_gstreamer_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "gstreamer_missing", lambda: "No module named 'gi'")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install"):
        conftest.require_rtsp()

