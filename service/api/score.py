"""POST /v1/score: score an uploaded clip with the live cameras' scorer and alert logic.

The body is multipart/form-data with the clip in the field `file` (a raw video body with
Content-Type application/octet-stream or video/* works too). See upload.py for the safety checks.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..clips import ClipError, UnsupportedContainer, sniff_container
from .deps import ApiKey, PipelineDep, SettingsDep, StateDep
from .schemas import FrameScore, ScoreResponse
from .upload import UploadError, receive_upload

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["score"], dependencies=[ApiKey])

_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "The clip: MP4/MOV, AVI, Matroska/WebM or MPEG-TS."}}}}}}}


@router.post("/score", response_model=ScoreResponse, openapi_extra=_BODY, responses={
    400: {"description": "Malformed multipart body."},
    413: {"description": "Upload larger than max_upload_mb."},
    415: {"description": "Not a supported video container."},
    422: {"description": "Truncated, undecodable, empty or too long a clip."}})
async def score_clip(request: Request, pipeline: PipelineDep, settings: SettingsDep,
                     state: StateDep) -> ScoreResponse:
    max_bytes = int(settings.max_upload_mb * 2**20)
    try:
        path = await receive_upload(request, settings.data_dir / "tmp", max_bytes)
    except UploadError as e:
        raise HTTPException(e.status, e.detail) from None
    except ClientDisconnect:  # nobody to answer; the partial file is already gone
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the client disconnected during the upload") from None
    try:
        try:
            container = sniff_container(path)
        except UnsupportedContainer as e:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(e)) from None
        except ClipError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        log.info("scoring an uploaded %s clip (%d bytes)", container, path.stat().st_size)
        async with state.score_slots:
            try:
                result = await run_in_threadpool(pipeline.score_clip, path)
            except ClipError as e:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    finally:
        path.unlink(missing_ok=True)
    return ScoreResponse(fps=result.fps, frames=[FrameScore(**f) for f in result.frames],
                         events=list(result.events))
