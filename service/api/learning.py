"""A camera's own models: learn (record footage, then train), list its versions, activate one (rollback or
forward), and change its address or alert settings without losing them (PATCH)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from model import WeightsError

from ..learning import LearningBusy, NotLearning
from ..settings import CameraSettings
from ..urls import redact_text
from .cameras import NOT_FOUND, check_url, not_found, quoted
from .deps import KeyFirstRoute, PipelineDep, SettingsDep
from .schemas import CameraPatch, CameraPublic, LearningPublic, LearnRequest, ModelList, ModelVersionPublic

router = APIRouter(prefix="/v1/cameras", tags=["cameras"], route_class=KeyFirstRoute)


@router.post("/{camera_id}/learn", status_code=status.HTTP_202_ACCEPTED, response_model=LearningPublic,
             responses={**NOT_FOUND, 409: {"description": "The camera is learning or training already."},
                        422: {"description": "Invalid minutes, or footage too short to learn from."}})
async def learn(camera_id: str, pipeline: PipelineDep, body: LearnRequest | None = None) -> LearningPublic:
    """Start (or restart) learning the camera's own model: fresh footage, then training in a fresh run. The
    camera keeps scoring with its current model meanwhile; its mode is `learning`, then `training`."""
    body = body or LearnRequest.model_validate({})
    try:
        fps = pipeline.camera_settings(camera_id).fps
    except KeyError:
        raise not_found(camera_id) from None
    short = pipeline.learning.footage_too_short(body.footage_minutes, fps)
    if short is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, short)
    try:
        view = await run_in_threadpool(pipeline.learning.learn, camera_id, body.footage_minutes, body.train_minutes)
    except KeyError:
        raise not_found(camera_id) from None
    except LearningBusy as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return LearningPublic.model_validate(view)


@router.delete("/{camera_id}/learn", response_model=LearningPublic,
               responses={**NOT_FOUND, 409: {"description": "The camera is not learning."}})
async def cancel_learning(camera_id: str, pipeline: PipelineDep) -> LearningPublic:
    """Cancel the camera's learning (recording, queued or training): its footage and training run are deleted,
    its models stay, and it scores as before it was asked to learn (its mode: armed or unarmed)."""
    try:
        view = await run_in_threadpool(pipeline.learning.cancel, camera_id)
    except KeyError:
        raise not_found(camera_id) from None
    except NotLearning as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return LearningPublic.model_validate(view)


@router.get("/{camera_id}/models", response_model=ModelList, responses=NOT_FOUND)
def models(camera_id: str, pipeline: PipelineDep) -> ModelList:
    try:
        pipeline.get_camera(camera_id)
        active = pipeline.registry.active(camera_id)
        versions = pipeline.registry.versions(camera_id)
    except KeyError:
        raise not_found(camera_id) from None
    except WeightsError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    name = None if active is None else active.version
    return ModelList(active=name, versions=[ModelVersionPublic(**v.to_dict(), active=v.version == name)
                                            for v in versions])


@router.post("/{camera_id}/models/{version}/activate", response_model=CameraPublic,
             responses={404: {"description": "No camera with this id, or no such version of its model."},
                        409: {"description": "The version's file cannot be loaded (changed or damaged on disk), "
                                             "or it learnt at another frame rate than the camera's fps; the "
                                             "camera keeps its model."}})
async def activate(camera_id: str, version: str, pipeline: PipelineDep) -> CameraPublic:
    """Score the camera with one of its versions from its next window on (rollback or forward)."""
    try:
        pipeline.camera_settings(camera_id)
    except KeyError:
        raise not_found(camera_id) from None
    try:
        await run_in_threadpool(pipeline.learning.activate, camera_id, version)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"camera {quoted(camera_id)} has no model {quoted(version)}") from None
    except WeightsError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, redact_text(str(e))) from None
    return CameraPublic.from_status(await run_in_threadpool(pipeline.get_camera, camera_id))


@router.patch("/{camera_id}", response_model=CameraPublic,
              responses={**NOT_FOUND,
                         409: {"description": "A new fps while the camera's footage waits for or is in training."},
                         422: {"description": "Invalid values, or a URL the rules of POST refuse."}})
async def patch_camera(camera_id: str, body: CameraPatch, request: Request, pipeline: PipelineDep,
                       settings: SettingsDep) -> CameraPublic:
    """Change the camera's url, fps, alert settings, or stop and start it (`enabled`). It keeps its mode, its models
    and its learning. A model scores only at the frame rate it learnt: at another fps the camera scores with the
    shipped model (its own comes back at its rate; with `learning.auto_relearn` it learns the new rate instead), and
    footage being recorded starts again at the new rate."""
    try:
        old = pipeline.camera_settings(camera_id)
    except KeyError:
        raise not_found(camera_id) from None
    changes = body.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None and k != "alerts")
    if nulls:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{nulls[0]} may not be null")
    if "alerts" in changes:
        changes["alerts"] = merge_alerts(old.alerts, changes["alerts"])
    if "url" in changes:
        check_url(changes["url"], request, settings)
    try:
        cam = CameraSettings.model_validate({**old.model_dump(), **changes})
    except ValidationError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            redact_text(str(e.errors()[0].get("msg", "invalid value")))) from None
    try:
        # A URL given over the API follows the API's rules (media_dir); otherwise the camera's own stays valid.
        await run_in_threadpool(pipeline.learning.update_camera, cam, trusted="url" not in changes)
    except KeyError:
        raise not_found(camera_id) from None
    except LearningBusy as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, redact_text(str(e))) from None
    return CameraPublic.from_status(await run_in_threadpool(pipeline.get_camera, camera_id))


def merge_alerts(old: dict[str, Any] | None, patch: dict[str, Any] | None) -> dict[str, Any] | None:
    """A PATCH's `alerts` merged into the camera's overrides (JSON merge patch, RFC 7396): a key set to null goes
    back to the service's setting, `alerts: null` drops them all."""
    if patch is None:
        return None
    merged = dict(old or {})
    for k, v in patch.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return merged or None
