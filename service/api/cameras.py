"""Camera CRUD. Adding a camera never waits for it: an unreachable URL is added and reports its state. Cameras
added here are kept in data_dir (service.camera_records) and come back after a restart; `learn` in the body
starts learning the camera's own model (service.learning).

Cameras added here are untrusted: their URL length, their host (`HostPolicy`: never a metadata service, a
link-local address or this service itself) and their number (`max_cameras`) are limited, and the API key is
checked before the body is even read (`KeyFirstRoute`)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from ..pipeline import CameraExists, CameraLimit
from ..settings import Settings
from ..urls import HostPolicy, check_host, redact_text
from .deps import KeyFirstRoute, PipelineDep, SettingsDep
from .schemas import CameraCreate, CameraPublic

router = APIRouter(prefix="/v1/cameras", tags=["cameras"], route_class=KeyFirstRoute)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No camera with this id."}}


def quoted(name: str, limit: int = 64) -> str:
    """A name from the request for an error message: quoted, and cut to `limit` characters."""
    return repr(name) if len(name) <= limit else repr(name[:limit]) + "..."


def not_found(camera_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no camera {quoted(camera_id)}")


def host_policy(settings: Settings, request: Request) -> HostPolicy:
    """The settings' policy, plus this service's own address: the port it answered this request on (any
    loopback or unspecified address reaches it) and the configured port."""
    host, port = request.scope.get("server") or ("", settings.port)
    own = {("", port), ("", settings.port), (str(host).lower(), port)}
    return HostPolicy(allowed=tuple(settings.camera_allowed_hosts), private=settings.camera_private_hosts,
                      own=frozenset(own))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CameraPublic,
             responses={409: {"description": "A camera with this id exists, max_cameras are running, or a DELETE of "
                                             "this id came while it was being added."},
                        422: {"description": "Invalid camera: bad id, unsupported URL scheme, a URL longer than "
                                             "max_url_length, a host the camera host policy refuses, a local "
                                             "path outside media_dir, or footage to learn from too short."}})
async def add_camera(body: CameraCreate, request: Request, pipeline: PipelineDep,
                     settings: SettingsDep) -> CameraPublic:
    check_url(body.url, request, settings)
    learn = body.learn
    short = None if learn is None else pipeline.learning.footage_too_short(learn.footage_minutes, body.fps)
    if short is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, short)
    try:
        # API clients are untrusted: local files only under media_dir, max_cameras (the pipeline enforces both).
        await run_in_threadpool(pipeline.learning.add_camera, body.settings(), learn=learn is not None,
                                footage_minutes=learn.footage_minutes if learn else None,
                                train_minutes=learn.train_minutes if learn else None)
        st = await run_in_threadpool(pipeline.get_camera, body.id)
    except CameraExists:
        raise HTTPException(status.HTTP_409_CONFLICT, f"camera {body.id!r} already exists") from None
    except CameraLimit as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    except KeyError:  # a DELETE of the same id landed between adding it and answering
        raise HTTPException(status.HTTP_409_CONFLICT, f"camera {body.id!r} was deleted while it was being added") \
            from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, redact_text(str(e))) from None
    return CameraPublic.from_status(st)


def check_url(url: str, request: Request, settings: Settings) -> None:
    """The length and host rules of a camera URL given over the API (422)."""
    if len(url) > settings.max_url_length:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"camera url is {len(url)} characters, over max_url_length ({settings.max_url_length})")
    try:
        check_host(url, host_policy(settings, request))
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, redact_text(str(e))) from None


@router.get("", response_model=list[CameraPublic])
def list_cameras(pipeline: PipelineDep) -> list[CameraPublic]:
    return [CameraPublic.from_status(s) for s in pipeline.list_cameras()]


@router.get("/{camera_id}", response_model=CameraPublic, responses=NOT_FOUND)
def get_camera(camera_id: str, pipeline: PipelineDep) -> CameraPublic:
    try:
        return CameraPublic.from_status(pipeline.get_camera(camera_id))
    except KeyError:
        raise not_found(camera_id) from None


@router.delete("/{camera_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_camera(camera_id: str, pipeline: PipelineDep) -> Response:
    try:
        # Joins the capture thread, kills a training process, removes the camera's footage and models.
        await run_in_threadpool(pipeline.learning.delete_camera, camera_id)
    except KeyError:
        raise not_found(camera_id) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
