"""The operator's dashboard: static files from service/static (plain HTML, CSS and one JS module; no build step,
nothing from a CDN) served at `/`. The page itself is public, like any login page: every piece of data it shows
comes from the API, behind the API key. `/ui/config.json` tells the page whether to ask for a key, so a first
visit shows the prompt instead of a failed request."""
from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from .deps import SettingsDep
from .security import key_required

STATIC = Path(__file__).resolve().parent.parent / "static"
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:js|css|svg)$")  # flat names only: no path ever leaves STATIC
_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
# The page is small and changes with the package: revalidate instead of caching a stale copy after an upgrade.
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/ui/config.json")
def config(settings: SettingsDep) -> dict[str, bool]:
    return {"api_key_required": key_required(settings.api_key)}


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    path = STATIC / name
    if not _ASSET.match(name) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard file {name!r}")
    return FileResponse(path, media_type=_TYPES[name.rsplit(".", 1)[1]], headers=_NO_CACHE)
