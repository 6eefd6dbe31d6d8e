"""The FastAPI application. Nothing is created at import time: `create_app(settings, ...)` builds the app, and
its lifespan loads what was not passed in (predictor, store, pipeline), wires the WebSocket hub to the
pipeline, starts the pipeline, and stops it (joining its threads) on shutdown."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from model import Predictor

from ..hub import Hub
from ..pipeline import Pipeline
from ..settings import Settings
from ..store import EventStore
from . import cameras, dashboard, events, live, pictures, score
from .deps import ApiKey, AppState, PipelineDep, StateDep
from .schemas import Health, scrub
from .security import key_required

log = logging.getLogger(__name__)


def create_app(settings: Settings, pipeline: Pipeline | None = None, predictor: Predictor | None = None,
               store: EventStore | None = None) -> FastAPI:
    """`pipeline` (with its `store`) is used as given; otherwise one is built at startup from `predictor`
    (default: load_predictor(settings.weights)) and an EventStore in settings.data_dir."""
    state = AppState(settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_store = store is None and pipeline is None
        pipe, st = pipeline, store
        if pipe is None:
            st = st or open_store(settings)
            pred = predictor
            if pred is None:
                from model import load_predictor  # torch work happens at startup, not at import

                pred = await run_in_threadpool(load_predictor, settings.weights, device=settings.device)
            pipe = Pipeline(settings, pred, st)
        if st is None:
            st = pipe.store
        hub = Hub(asyncio.get_running_loop())
        unsubscribe = pipe.add_listener(hub.publish)
        state.pipeline, state.store, state.hub = pipe, st, hub
        await run_in_threadpool(pipe.start)
        log.info("ffp service up: %d camera(s), API key %s", len(pipe.list_cameras()),
                 "required" if key_required(settings.api_key) else "off (set FFP_API_KEY to require one)")
        try:
            yield
        finally:
            unsubscribe()
            state.pipeline = None
            await run_in_threadpool(pipe.stop)
            if owned_store:
                st.close()
            state.store = state.hub = None

    app = FastAPI(title="ffp", version="0.1.0", lifespan=lifespan,
                  description="Real-time video anomaly detection by future frame prediction. "
                              "REST under /v1, live scores and events on the WebSocket /v1/ws.")
    app.state.ffp = state

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Never a bare 500 page or a traceback (which might quote a camera URL) in a response.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz(st: StateDep) -> Health:
        pipe = st.pipeline
        return Health(cameras=len(pipe.list_cameras()) if pipe else 0, pipeline_running=pipe is not None)

    for module in (cameras, pictures, events, score, live, dashboard):
        app.include_router(module.router)

    @app.get("/v1/stats", tags=["health"], dependencies=[ApiKey])
    def stats(pipe: PipelineDep, st: StateDep) -> dict[str, object]:
        out = dict(pipe.stats())
        out["websocket"] = st.hub.stats() if st.hub else {}
        return scrub(out)  # type: ignore[no-any-return]

    return app


def open_store(settings: Settings) -> EventStore:
    return EventStore.open(settings.data_dir)
