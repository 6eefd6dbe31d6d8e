"""Events (read-only): list with filters, one event, and its snapshot / heatmap JPEGs."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ..frames import Event
from .deps import ApiKey, StoreDep
from .schemas import EventList, EventPublic

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[ApiKey])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such event (or it has no such image)."}}


@router.get("", response_model=EventList)
async def list_events(
    store: StoreDep,
    camera: Annotated[str | None, Query(description="Only this camera's events.")] = None,
    since: Annotated[float | None, Query(description="Events that started at or after this Unix time.")] = None,
    until: Annotated[float | None, Query(description="Events that started before this Unix time.")] = None,
    active: Annotated[bool | None, Query(description="true: open events only; false: ended only.")] = None,
    event_type: Annotated[Literal["anomaly", "scene_change"] | None,
                          Query(alias="type", description="Only events of this type.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most events returned, newest first.")] = 100,
) -> EventList:
    evs = await run_in_threadpool(store.list_events, camera_id=camera, since=since, until=until,
                                  active=active, event_type=event_type, limit=limit)
    return EventList(events=[EventPublic.from_event(e) for e in evs])


async def _event(store: StoreDep, event_id: str) -> Event:
    ev = await run_in_threadpool(store.get, event_id)
    if ev is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}")
    return ev


@router.get("/{event_id}", response_model=EventPublic, responses=NOT_FOUND)
async def get_event(event_id: str, store: StoreDep) -> EventPublic:
    return EventPublic.from_event(await _event(store, event_id))


async def _image(store: StoreDep, event_id: str, which: Literal["snapshot", "heatmap"]) -> FileResponse:
    ev = await _event(store, event_id)
    rel = ev.snapshot_path if which == "snapshot" else ev.heatmap_path
    path = store.image_path(rel) if rel else None  # refuses anything outside the image root
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id!r} has no {which} image")
    return FileResponse(path, media_type="image/jpeg")


@router.get("/{event_id}/snapshot.jpg", response_class=FileResponse, responses=NOT_FOUND)
async def snapshot(event_id: str, store: StoreDep) -> FileResponse:
    return await _image(store, event_id, "snapshot")


@router.get("/{event_id}/heatmap.jpg", response_class=FileResponse, responses=NOT_FOUND)
async def heatmap(event_id: str, store: StoreDep) -> FileResponse:
    return await _image(store, event_id, "heatmap")
