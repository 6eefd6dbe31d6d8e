"""API key and Origin checks shared by REST routes and the WebSocket.

A key is accepted from `X-API-Key: <key>` or `Authorization: Bearer <key>` (and, for the WebSocket, /docs and
the picture routes, the `api_key` query parameter, because a browser cannot set headers there). Comparison is
constant time. Without a configured key every request is allowed.

Origin: a browser page from another site must not drive the service through its visitor's browser (the
WebSocket has no same-origin policy, and a cross-site form POST needs no CORS preflight). A request whose
`Origin` is neither the service's own nor in `allowed_origins` is refused; requests without an Origin (curl,
Python, cameras: not browsers) are not affected.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..urls import redact_text

_KEY_IN_QUERY = re.compile(r"(?i)(api_key=)[^&\s\"']+")


def presented_key(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query is not None:
        return query.get("api_key") or None
    return None


def key_required(expected: SecretStr | None) -> bool:
    # An empty key counts as none: `FFP_API_KEY=` (as docker/compose.yaml passes when unset) means "off".
    return expected is not None and expected.get_secret_value() != ""


def key_ok(expected: SecretStr | None, presented: str | None) -> bool:
    if expected is None or not key_required(expected):
        return True
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


_DEFAULT_PORT = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _authority(scheme: str, netloc: str) -> str:
    netloc = netloc.lower()
    default = _DEFAULT_PORT.get(scheme)
    return netloc[: -len(default) - 1] if default and netloc.endswith(":" + default) else netloc


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """True for no Origin (not a browser), the service's own origin (same host and port as the request's Host
    header), an origin in `allowed` or any origin when `allowed` holds '*'. `Origin: null` (sandboxed frames,
    file: pages) is never the service's own."""
    if origin is None:
        return True
    origin = origin.strip().lower()
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False
    return _authority(parts.scheme, parts.netloc) == _authority(parts.scheme, host)


class OriginCheck:
    """ASGI middleware: refuse a state-changing request (POST, PUT, PATCH, DELETE) from a browser page of another
    origin with 403, before the body is read. Browsers send Origin with every such request; a cross-site request
    without one (`Sec-Fetch-Site: cross-site`) is refused too. The WebSocket checks Origin itself (live.py)."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app, self.allowed = app, tuple(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            cross_site = origin is None and headers.get("sec-fetch-site") == "cross-site"
            if cross_site or not origin_allowed(origin, headers.get("host"), self.allowed):
                body = json.dumps({"detail": "cross-origin request refused (Origin not in allowed_origins)"})
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


class RedactSecrets(logging.Filter):
    """Handler filter: uvicorn logs WebSocket paths with their query (`?api_key=...`), and FFmpeg errors may
    quote camera URLs; neither secret reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact_text(_KEY_IN_QUERY.sub(r"\1***", msg))
        if clean != msg:
            record.msg, record.args = clean, None
        return True
