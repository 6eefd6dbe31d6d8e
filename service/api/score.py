"""POST /v1/score: score an uploaded clip with the live cameras' scorer and alert logic.

The body is multipart/form-data with the clip in the field `file` (a raw video body with
Content-Type application/octet-stream or video/* works too). See upload.py for the safety checks and the queue.
A client that disconnects while its upload waits or is scored frees its place: scoring stops at the next frame
or batch.

The answer's events have the live events' fields (EventPublic), with times in seconds from the clip's start.
Their images (the peak frame and its heatmap, boxed and captioned as a live event's) are links valid for
`clip_images_ttl_s` under /v1/clips/, or with `?images=inline` data: URLs in the answer itself.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from model import CLIP_CAMERA

from ..clip_images import ClipImages
from ..clips import ClipCancelled, ClipError, ClipResult, UnsupportedContainer, sniff_container
from ..pipeline import Pipeline
from ..snapshots import clip_caption, event_images
from .deps import ApiKey, ApiKeyOrQuery, PipelineDep, SettingsDep, StateDep
from .schemas import EventPublic, FrameScore, ScoreResponse
from .upload import ClientGone, QueueFull, UploadError, UploadQueue, receive_upload

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["score"])
Images = Annotated[Literal["url", "inline"], Query(description="url: event images as links valid for "
                                                   "clip_images_ttl_s; inline: as data: URLs in the answer.")]

_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "The clip: MP4/MOV, AVI, Matroska/WebM or MPEG-TS."}}}}}}}


@router.post("/score", response_model=ScoreResponse, openapi_extra=_BODY, dependencies=[ApiKey], responses={
    400: {"description": "Malformed multipart body."},
    413: {"description": "Upload larger than max_upload_mb."},
    415: {"description": "Not a supported video container."},
    422: {"description": "Truncated, undecodable, empty, too long or too large a clip (max_clip_* settings)."},
    503: {"description": "Too many uploads in progress (upload_workers + upload_queue); see Retry-After."}})
async def score_clip(request: Request, pipeline: PipelineDep, settings: SettingsDep,
                     state: StateDep, images: Images = "url") -> ScoreResponse:
    try:
        async with state.uploads.place():
            result = await _receive_and_score(request, pipeline, state.uploads, settings.data_dir / "tmp",
                                              int(settings.max_upload_mb * 2**20))
    except QueueFull as e:
        # connection: close, so the unread body does not keep streaming into a connection that has its answer
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e),
                            headers={"Retry-After": str(e.retry_after_s), "Connection": "close"}) from None
    events = await run_in_threadpool(_events_with_images, result, images, state.clip_images)
    linked = any((e.snapshot_url or "").startswith("/v1/clips/") for e in events)
    return ScoreResponse(fps=result.fps, frames=[FrameScore(**f) for f in result.frames], events=events,
                         images_expire_s=settings.clip_images_ttl_s if linked else None)


def _events_with_images(result: ClipResult, images: str, store: ClipImages) -> list[EventPublic]:
    """The clip's events with their image URLs: files under /v1/clips/ (url) or data: URLs (inline)."""
    jpegs = {eid: event_images(p.frame, p.heatmap, clip_caption(CLIP_CAMERA, p.time))
             for eid, p in result.peaks.items()}
    urls: dict[str, tuple[str, str]] = {}
    if images == "inline":
        urls = {eid: (_data_url(snap), _data_url(heat)) for eid, (snap, heat) in jpegs.items()}
    elif jpegs:
        try:
            result_id, names = store.save(jpegs)
        except OSError:  # the scores still answer; the events go without images, as a live event's would
            log.exception("cannot write the event images of a scored clip")
            names, result_id = {}, ""
        urls = {eid: (f"/v1/clips/{result_id}/{s}", f"/v1/clips/{result_id}/{h}") for eid, (s, h) in names.items()}
    out = []
    for ev in result.events:
        snap, heat = urls.get(ev["id"], (None, None))
        out.append(EventPublic(**ev, snapshot_url=snap, heatmap_url=heat))
    return out


def _data_url(jpeg: bytes) -> str:
    return f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}"


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such image, or it has expired."}}


@router.get("/clips/{result_id}/{name}", response_class=FileResponse, dependencies=[ApiKeyOrQuery],
            responses=NOT_FOUND)
async def clip_image(result_id: str, name: str, state: StateDep) -> FileResponse:
    """An event image of a scored clip (`<event id>-snapshot.jpg` or `-heatmap.jpg`), while it is kept."""
    path = state.clip_images.path(result_id, name)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such clip image (they are kept for clip_images_ttl_s)")
    return FileResponse(path, media_type="image/jpeg")


async def _receive_and_score(request: Request, pipeline: Pipeline, uploads: UploadQueue, tmp_dir: Path,
                             max_bytes: int) -> ClipResult:
    try:
        path = await receive_upload(request, tmp_dir, max_bytes)
    except UploadError as e:
        raise HTTPException(e.status, e.detail, headers={"Connection": "close"} if e.status == 413 else None
                            ) from None
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
        try:
            async with uploads.slot(request.is_disconnected):
                return await _score_while_connected(request, pipeline, path)
        except ClipError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        except (ClientGone, ClipCancelled):
            log.info("the client of an upload disconnected: scoring stopped, slot freed")
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "the client disconnected") from None
    finally:
        path.unlink(missing_ok=True)


async def _score_while_connected(request: Request, pipeline: Pipeline, path: Path) -> ClipResult:
    """Score in a worker thread; if the client disconnects meanwhile, stop it at its next frame or batch and wait
    for that, so the slot is free when this returns (ClipCancelled)."""
    cancel = threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(pipeline.score_clip, path, cancel=cancel))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=UploadQueue.POLL_S)
            if not task.done() and await request.is_disconnected():
                cancel.set()
        return task.result()
    finally:
        cancel.set()  # also when this handler is cancelled (shutdown): the thread stops at its next batch
