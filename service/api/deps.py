"""FastAPI dependencies: the app's collaborators, typed, so handlers read like plain signatures."""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.routing import APIRoute

from ..clip_images import ClipImages
from ..hub import Hub
from ..metrics import ServiceMetrics
from ..pipeline import Pipeline
from ..settings import Settings
from ..store import EventStore
from .security import key_ok, presented_key
from .upload import UploadQueue


@dataclass
class AppState:
    """Everything the routes use; one typed object on app.state instead of loose attributes."""

    settings: Settings
    pipeline: Pipeline | None = None
    store: EventStore | None = None
    hub: Hub | None = None
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)  # one registry per app
    # Clip scoring is CPU-bound and shares the cores with the live cameras: few at a time, a bounded queue.
    uploads: UploadQueue = field(init=False)
    clip_images: ClipImages = field(init=False)  # the event images of scored clips, for clip_images_ttl_s

    def __post_init__(self) -> None:
        self.uploads = UploadQueue(self.settings.upload_workers, self.settings.upload_queue)
        self.clip_images = ClipImages(self.settings.data_dir / "clips", self.settings.clip_images_ttl_s)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ffp
    return state


def _running(state: AppState) -> tuple[Pipeline, EventStore]:
    if state.pipeline is None or state.store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is starting or stopping")
    return state.pipeline, state.store


def get_pipeline(state: Annotated[AppState, Depends(get_state)]) -> Pipeline:
    return _running(state)[0]


def get_store(state: Annotated[AppState, Depends(get_state)]) -> EventStore:
    return _running(state)[1]


def get_settings(state: Annotated[AppState, Depends(get_state)]) -> Settings:
    return state.settings


def _unauthorized(where: str = "X-API-Key or Authorization: Bearer") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing or invalid API key (send {where})",
                         headers={"WWW-Authenticate": "Bearer"})


def require_api_key(request: Request, state: Annotated[AppState, Depends(get_state)]) -> None:
    if not key_ok(state.settings.api_key, presented_key(request.headers)):
        raise _unauthorized()


class KeyFirstRoute(APIRoute):
    """A route that checks the API key before anything else. FastAPI reads and parses a JSON body before it runs
    any dependency, so with `dependencies=[ApiKey]` alone a client without a key could make the service read any
    body and would get 422 with details instead of 401."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            require_api_key(request, get_state(request))
            return await handler(request)

        return checked


def require_api_key_or_query(request: Request, state: Annotated[AppState, Depends(get_state)]) -> None:
    """For routes an <img> loads (it cannot send headers): the key may also come as `?api_key=`, as on the
    WebSocket. Log lines redact it (security.RedactSecrets)."""
    if not key_ok(state.settings.api_key, presented_key(request.headers, request.query_params)):
        raise _unauthorized("X-API-Key, Authorization: Bearer or ?api_key=")


def require_docs_access(request: Request, state: Annotated[AppState, Depends(get_state)]) -> None:
    """/docs and /openapi.json: behind the API key unless docs_public. A browser cannot add a header when it
    opens a page, so `?api_key=` is accepted here too."""
    if not state.settings.docs_public:
        require_api_key_or_query(request, state)


StateDep = Annotated[AppState, Depends(get_state)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
StoreDep = Annotated[EventStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiKey = Depends(require_api_key)
DocsAccess = Depends(require_docs_access)
ApiKeyOrQuery = Depends(require_api_key_or_query)
