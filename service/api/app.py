"""The FastAPI application. Nothing is created at import time: `create_app(service)` builds the app around a
service from `build_service`; its lifespan wires the WebSocket hub to the pipeline, starts the service, and stops
it (joining its threads) on shutdown."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..hub import Hub
from ..urls import redact_text
from ..wiring import Service
from . import cameras, dashboard, docs, events, learning, live, metrics, pictures, score
from .deps import ApiKey, AppState, PipelineDep, StateDep
from .schemas import Health, scrub
from .security import OriginCheck, key_required

log = logging.getLogger(__name__)


def create_app(service: Service) -> FastAPI:
    state = AppState(settings=service.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipe = service.pipeline
        hub = Hub(asyncio.get_running_loop(), on_dispatch=state.metrics.observe_dispatch)
        unsubscribe = pipe.add_listener(hub.publish)
        detach_metrics = state.metrics.attach(pipe, hub)
        state.pipeline, state.store, state.hub = pipe, service.store, hub
        await run_in_threadpool(service.start)
        log.info("ffp service up: %d camera(s), API key %s", len(pipe.list_cameras()),
                 "required" if key_required(service.settings.api_key) else "off (set FFP_API_KEY to require one)")
        try:
            yield
        finally:
            unsubscribe()
            detach_metrics()
            state.pipeline = None
            await run_in_threadpool(service.stop)
            state.store = state.hub = None

    # FastAPI's docs pages load Swagger UI from a CDN and its schema route is public: docs.router serves both,
    # offline and behind DocsAccess.
    app = FastAPI(title="ffp", version="0.1.0", lifespan=lifespan, description=docs.DESCRIPTION, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.openapi = docs.with_websocket_schemas(app)  # type: ignore[method-assign]
    app.state.ffp = state
    app.add_middleware(OriginCheck, allowed=service.settings.allowed_origins)
    app.add_middleware(live.SocketBuffers)  # added last = outermost: it must see the server's own `send`

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the offending input (a camera URL with its password, megabytes of it).
        return JSONResponse({"detail": [validation_error(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Never a bare 500 page or a traceback (which might quote a camera URL) in a response.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz(st: StateDep) -> Health:
        pipe = st.pipeline
        return Health(cameras=len(pipe.list_cameras()) if pipe else 0, pipeline_running=pipe is not None)

    for module in (cameras, learning, pictures, events, score, live, metrics, docs, dashboard):
        app.include_router(module.router)

    @app.get("/v1/stats", tags=["health"], dependencies=[ApiKey])
    def stats(pipe: PipelineDep, st: StateDep) -> dict[str, object]:
        out = dict(pipe.stats())
        out["websocket"] = st.hub.stats() if st.hub else {}
        return scrub(out)  # type: ignore[no-any-return]

    return app


def validation_error(err: Any) -> dict[str, Any]:
    """One pydantic error without its input or context (never echoed: it may hold credentials), its location
    and message bounded in length and redacted."""
    loc = [part if isinstance(part, int) else str(part)[:64] for part in err.get("loc", ())]
    return {"type": err.get("type"), "loc": loc, "msg": redact_text(str(err.get("msg", "")))[:300]}
