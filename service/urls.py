"""Camera URL rules: which sources are allowed, where local files may be read from, and redaction.

Cameras from the settings file are trusted. A camera added through the API is not: it may read network
streams, but local files and devices only under `media_dir` (resolved, symlinks followed, `..` refused), so an
API client cannot make the service open /etc/passwd or an arbitrary /dev node (FFmpeg reads anything).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_WEBCAM = re.compile(r"^webcam:(\d{1,3})$")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_SECRET_PARAMS = {"password", "passwd", "pass", "pwd", "token", "key", "api_key", "apikey", "secret", "auth"}


@dataclass(frozen=True)
class SourceSpec:
    """What capture opens: a network URL, a local file, or a webcam index."""

    kind: Literal["network", "file", "webcam"]
    target: str | int  # URL, absolute path, or device index


def _split_scheme(url: str) -> str | None:
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else None


def check_scheme(url: str) -> None:
    """ValueError for anything but rtsp(s)://, http(s)://, webcam:N, file:// or a plain path."""
    if not url or not url.strip() or any(ord(c) < 32 for c in url):
        raise ValueError("camera url must be a non-empty string without control characters")
    scheme = _split_scheme(url)
    if scheme is None or scheme == "file":
        return
    if scheme == "webcam":
        if not _WEBCAM.match(url):
            raise ValueError(f"webcam url must be webcam:N, got {redact_url(url)!r}")
        return
    if scheme not in NETWORK_SCHEMES:
        # FFmpeg protocols such as concat:, pipe:, subfile:, data:, ftp:// would read arbitrary things.
        raise ValueError(f"unsupported url scheme {scheme!r}: use one of {', '.join(NETWORK_SCHEMES)}, "
                         "a file path or webcam:N")
    if not urlsplit(url).hostname:
        raise ValueError(f"{scheme} url has no host: {redact_url(url)!r}")


def resolve_source(url: str, *, trusted: bool, media_dir: Path | None) -> SourceSpec:
    """Check a camera URL and say what to open. Untrusted local paths must lie inside media_dir."""
    check_scheme(url)
    scheme = _split_scheme(url)
    if scheme in NETWORK_SCHEMES:
        return SourceSpec("network", url)
    if scheme == "webcam":
        index = int(url.split(":", 1)[1])
        if not trusted:
            _inside(Path(f"/dev/video{index}"), media_dir, what="device")
        return SourceSpec("webcam", index)
    raw = urlsplit(url).path if scheme == "file" else url
    path = Path(raw).expanduser()
    if not trusted:
        if ".." in path.parts:
            raise ValueError("camera path may not contain '..'")
        if media_dir is not None and not path.is_absolute():
            path = media_dir / path
        path = _inside(path, media_dir, what="file")
    return SourceSpec("file", str(path.resolve() if trusted else path))


def _inside(path: Path, media_dir: Path | None, *, what: str) -> Path:
    if media_dir is None:
        raise ValueError(f"local {what}s are not allowed for cameras added through the API (media_dir is unset)")
    root = media_dir.expanduser().resolve()
    real = path.resolve()  # follows symlinks: a link inside media_dir pointing out is refused
    if real != root and root not in real.parents:
        raise ValueError(f"local {what} {path} is outside media_dir")
    return real


def redact_url(url: str) -> str:
    """Remove user:password and secret-looking query parameters from a URL (never log the raw URL)."""
    if _split_scheme(url) in NETWORK_SCHEMES or "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return redact_text(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return url


def redact_text(text: str) -> str:
    """Redact credentials of any URL embedded in free text (error messages from FFmpeg/OpenCV)."""
    return _USERINFO.sub(r"\1***@", text)
