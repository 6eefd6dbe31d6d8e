"""Offline API docs: Swagger UI at /docs from the assets of the `swagger-ui-bundle-v2` package (Apache-2.0), so the
page works without internet, and the WebSocket protocol in the OpenAPI description (OpenAPI has no WebSocket
operations), with the message models among the schemas."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel
from swagger_ui_bundle import swagger_ui_path

from ..hub import CLOSE_RESUME
from .deps import DocsAccess
from .live import CLOSE_BAD_REQUEST, CLOSE_POLICY, HEARTBEAT_S, SEND_TIMEOUT_S
from .schemas import (
    CameraWsMessage,
    EventWsMessage,
    HeartbeatMessage,
    ScoreWsMessage,
    SubscribedMessage,
    SubscribeRequest,
)

router = APIRouter(include_in_schema=False)

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs/static"
# Only what the page loads; the package's other files (its demo index.html, source maps) are not served.
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "favicon-32x32.png": "image/png"}
WS_MESSAGES: tuple[type[BaseModel], ...] = (SubscribeRequest, SubscribedMessage, ScoreWsMessage, EventWsMessage,
                                            CameraWsMessage, HeartbeatMessage)

DESCRIPTION = f"""Real-time video anomaly detection by future frame prediction. REST under `/v1`, live scores and
events on the WebSocket `/v1/ws`, Prometheus metrics at `/metrics`.

With an API key configured, send it as `X-API-Key: <key>` or `Authorization: Bearer <key>` (the WebSocket also
takes `?api_key=<key>`); only `/healthz` needs none (and these docs with `docs_public`; in a browser open
`/docs?api_key=<key>`).

## WebSocket `/v1/ws`

`ws://HOST:PORT/v1/ws?cameras=gate,door&kinds=scores,events&resume_from=41&api_key=KEY`: every parameter is
optional (default: every camera, both kinds, no replay). Messages are JSON text frames; their models are
listed under *Schemas* below.

| type | direction | when |
|---|---|---|
| `subscribe` (`SubscribeRequest`) | client → server | any time: a new subscription (`resume_from`: replay first) |
| `subscribed` (`SubscribedMessage`) | server → client | after the replay (if any): the live stream starts |
| `score` (`ScoreWsMessage`) | server → client | every scored frame; `score` in z units, higher = more anomalous |
| `event` (`EventWsMessage`) | server → client | every event `start`, `update` and `end`; `seq` strictly increases |
| `camera` (`CameraWsMessage`) | server → client | a camera's `mode` or model changed; sent whatever `kinds` |
| `heartbeat` (`HeartbeatMessage`) | server → client | after {HEARTBEAT_S:g} s without another message |

**Resume without losing events.** Keep the last event `seq` seen and reconnect with `resume_from=<seq>`: the
server sends every stored event message after it (`replay: true`), then `subscribed`, then live messages, with
no gap and no duplicate at the seam.

**Slow clients** never slow the pipeline. Score messages beyond a bounded backlog are dropped and counted
(`dropped_scores` in the next score or heartbeat). Event messages are never dropped silently: when a client's
event backlog overflows, or a send to it stays blocked for {SEND_TIMEOUT_S:g} s (it stopped reading), the server
closes the connection with code {CLOSE_RESUME} and the client reconnects with `resume_from`.

Close codes: {CLOSE_POLICY} missing or wrong API key, or an `Origin` not in `allowed_origins`; {CLOSE_BAD_REQUEST}
invalid query parameters or client message (a binary frame, not a `subscribe` message); 1013 the service is
starting or stopping; {CLOSE_RESUME} the client fell behind, reconnect with `resume_from`.
"""


def _asset_url(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '').rstrip('/')}{ASSETS_URL}/{name}"


@router.get(OPENAPI_URL, dependencies=[DocsAccess])
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", dependencies=[DocsAccess])
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    key = request.query_params.get("api_key")  # a page opened with ?api_key= passes it on to its schema
    schema = f"{root}{OPENAPI_URL}" + (f"?api_key={quote(key, safe='')}" if key else "")
    return get_swagger_ui_html(openapi_url=schema, title=f"{request.app.title} API",
                               swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
                               swagger_css_url=_asset_url(request, "swagger-ui.css"),
                               swagger_favicon_url=_asset_url(request, "favicon-32x32.png"),
                               # Swagger UI would send the spec to an online validator for its badge.
                               swagger_ui_parameters={"validatorUrl": None})


@router.get(ASSETS_URL + "/{name}")
def swagger_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no docs asset {name!r}")
    return FileResponse(Path(str(swagger_ui_path)) / name, media_type=media_type)


def with_websocket_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """app.openapi that adds the WebSocket message models to components/schemas, so /docs shows them."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = base()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in WS_MESSAGES:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas.setdefault(model.__name__, schema)
            app.openapi_schema = spec
        return app.openapi_schema
    return openapi
