"""API key check shared by REST routes and the WebSocket.

A key is accepted from `X-API-Key: <key>` or `Authorization: Bearer <key>` (and, for the WebSocket only,
the `api_key` query parameter, because browsers cannot set headers on a WebSocket). Comparison is constant
time. Without a configured key every request is allowed.
"""
from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping

from pydantic import SecretStr

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


class RedactSecrets(logging.Filter):
    """Handler filter: uvicorn logs WebSocket paths with their query (`?api_key=...`), and FFmpeg errors may
    quote camera URLs; neither secret reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact_text(_KEY_IN_QUERY.sub(r"\1***", msg))
        if clean != msg:
            record.msg, record.args = clean, None
        return True
