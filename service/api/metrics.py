"""GET /metrics: the service's Prometheus metrics (service/metrics.py) in the text format, behind the API key
unless the settings say `metrics_public: true`."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .deps import StateDep, require_api_key

router = APIRouter(tags=["health"])


def metrics_access(request: Request, state: StateDep) -> None:
    if not state.settings.metrics_public:
        require_api_key(request, state)


@router.get("/metrics", dependencies=[Depends(metrics_access)], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}})
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
