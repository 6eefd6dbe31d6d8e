"""Camera CRUD. Adding a camera never waits for it: an unreachable URL is added and reports its state."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from starlette.concurrency import run_in_threadpool

from ..pipeline import CameraExists
from ..urls import redact_text
from .deps import ApiKey, PipelineDep
from .schemas import CameraCreate, CameraPublic

router = APIRouter(prefix="/v1/cameras", tags=["cameras"], dependencies=[ApiKey])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No camera with this id."}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CameraPublic,
             responses={409: {"description": "A camera with this id exists."},
                        422: {"description": "Invalid camera: bad id, unsupported URL scheme, or a local "
                                             "path outside media_dir."}})
async def add_camera(body: CameraCreate, pipeline: PipelineDep) -> CameraPublic:
    try:
        # API clients are untrusted: local files only under media_dir (the pipeline enforces it).
        st = await run_in_threadpool(pipeline.add_camera, body, trusted=False)
    except CameraExists:
        raise HTTPException(status.HTTP_409_CONFLICT, f"camera {body.id!r} already exists") from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, redact_text(str(e))) from None
    return CameraPublic.from_status(st)


@router.get("", response_model=list[CameraPublic])
def list_cameras(pipeline: PipelineDep) -> list[CameraPublic]:
    return [CameraPublic.from_status(s) for s in pipeline.list_cameras()]


@router.get("/{camera_id}", response_model=CameraPublic, responses=NOT_FOUND)
def get_camera(camera_id: str, pipeline: PipelineDep) -> CameraPublic:
    try:
        return CameraPublic.from_status(pipeline.get_camera(camera_id))
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera {camera_id!r}") from None


@router.delete("/{camera_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_camera(camera_id: str, pipeline: PipelineDep) -> Response:
    try:
        await run_in_threadpool(pipeline.remove_camera, camera_id)  # joins the capture thread
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera {camera_id!r}") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
