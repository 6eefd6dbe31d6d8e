"""Redaction: a URL shown anywhere (the service's API, stats, logs, last_error; `ffp learn`'s errors) loses its
userinfo and its query values."""
from __future__ import annotations

import re

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """The URL without its userinfo and with every query value replaced by ***: never log the raw URL.

    The userinfo ends at the last '@', not where a URL parser would end the authority: a password holding '#',
    '/', '?' or an unencoded '@' must not spill into the host or path shown. A path containing '@' is redacted
    up to it as well (safe side)."""
    m = _SCHEME.match(url)
    if m is None or not url[m.end():].startswith("//"):
        return url
    head, rest = url[:m.end() + 2], url[m.end() + 2:]
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    path, sep, query = rest.partition("?")
    if not sep:
        return head + rest
    query, hsep, fragment = query.partition("#")
    pairs = [p.partition("=") for p in query.split("&")]
    query = "&".join(k + ("=***" if eq else "") for k, eq, _ in pairs)
    return head + path + "?" + query + hsep + ("***" if fragment else "")


def redact_text(text: str) -> str:
    """Redact every URL embedded in free text (error messages from FFmpeg/OpenCV, log lines)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
