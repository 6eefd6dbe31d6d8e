"""/docs works offline: the page references only the service's own URLs, which serve Swagger UI's assets, and the
OpenAPI document describes the WebSocket protocol and its message models."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import serve, untrained_predictor

from service.api import create_app
from service.settings import load_settings
from service.wiring import build_service


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    # The docs need the key like the API (test_api_hardening: without it, and docs_public).
    settings = load_settings(None, data_dir=tmp_path_factory.mktemp("docs") / "data", api_key="k")
    with serve(create_app(build_service(settings, predictor=untrained_predictor()))) as srv, \
            httpx.Client(base_url=srv.url, headers={"X-API-Key": "k"}, timeout=10) as c:
        yield c


def test_docs_page_loads_only_local_assets(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "SwaggerUIBundle" in html
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), "the page must not load from a host"
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(refs) == 3, refs  # the script, the stylesheet and the favicon
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for ref in refs:
        assert ref.startswith("/docs/static/"), ref
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["content-type"].startswith(types[Path(ref).suffix]), (ref, asset.headers)
        assert len(asset.content) > 500, ref
    assert "'/openapi.json'" in html and '"validatorUrl": null' in html
    assert client.get("/docs/static/index.html").status_code == 404  # only the files the page loads
    assert client.get("/docs/static/..%2F__init__.py").status_code == 404
    assert client.get("/redoc").status_code == 404  # FastAPI's ReDoc page would load from a CDN


def test_openapi_documents_the_websocket(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    description = spec["info"]["description"]
    for text in ("/v1/ws", "resume_from", "heartbeat", "4000", "1008", "4400", "dropped_scores"):
        assert text in description, text
    schemas = spec["components"]["schemas"]
    for name in ("SubscribeRequest", "SubscribedMessage", "ScoreWsMessage", "EventWsMessage", "CameraWsMessage",
                 "HeartbeatMessage"):
        assert name in schemas and name in description, name
    assert schemas["EventWsMessage"]["properties"]["event"] == {"$ref": "#/components/schemas/EventPublic"}
    assert "/metrics" in spec["paths"]
