"""HTTP and WebSocket API of the ffp service (FastAPI). Build it with `create_app(settings)`."""
from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
