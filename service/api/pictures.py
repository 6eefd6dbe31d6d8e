"""A camera's live picture: its latest frame as one JPEG, or as an MJPEG stream (multipart/x-mixed-replace).

`?overlay=heatmap` shows the last *scored* frame with its prediction-error heatmap blended in: the frame and
heatmap of one window belong together, while the latest decoded frame may be a few frames ahead of scoring.
Before the first score the plain frame is shown. An <img> cannot send headers, so these routes also take the
API key as `?api_key=` (redacted from logs like the WebSocket's).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..pipeline import Pipeline
from ..snapshots import encode_jpeg, heatmap_overlay
from .cameras import NOT_FOUND, not_found
from .deps import ApiKeyOrQuery, PipelineDep, StateDep

router = APIRouter(prefix="/v1/cameras", tags=["cameras"], dependencies=[ApiKeyOrQuery])

STREAM_MAX_FPS = 10.0  # an MJPEG client gets at most this many frames a second, new frames only
BOUNDARY = "ffpframe"
Overlay = Annotated[Literal["none", "heatmap"], Query(description="heatmap: blend the prediction error of the "
                                                                  "last scored frame over it.")]
# A plain frame, or (frame, heatmap) to blend: encoding happens off the event loop, so composing does too.
Picture = np.ndarray | tuple[np.ndarray, np.ndarray]
RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    503: {"description": "The camera has not delivered a frame yet (JSON detail)."},
}


def picture(pipeline: Pipeline, camera_id: str, overlay: str) -> Picture | None:
    """The image to show (BGR); None before the camera's first frame. KeyError for an unknown camera."""
    frame = pipeline.latest_frame(camera_id)
    if overlay == "heatmap":
        scored = pipeline.latest_scored(camera_id)
        if scored is not None:
            return scored
    return frame


def render(image: Picture) -> bytes:
    if isinstance(image, tuple):
        return encode_jpeg(heatmap_overlay(*image), quality=80)
    return encode_jpeg(image, quality=80)


def _current(pipeline: Pipeline, camera_id: str, overlay: str) -> Picture:
    try:
        image = picture(pipeline, camera_id, overlay)
    except KeyError:
        raise not_found(camera_id) from None
    if image is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"camera {camera_id!r} has no frame yet")
    return image


@router.get("/{camera_id}/frame.jpg", response_class=Response, responses=RESPONSES)
async def frame_jpg(camera_id: str, pipeline: PipelineDep, overlay: Overlay = "none") -> Response:
    """The camera's latest decoded frame as JPEG."""
    image = _current(pipeline, camera_id, overlay)
    data = await run_in_threadpool(render, image)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/{camera_id}/stream.mjpg", response_class=StreamingResponse, responses=RESPONSES)
async def stream_mjpg(camera_id: str, pipeline: PipelineDep, st: StateDep,
                      overlay: Overlay = "none") -> StreamingResponse:
    """MJPEG (multipart/x-mixed-replace) of the camera's frames, at most STREAM_MAX_FPS. It ends when the client
    leaves, the camera is removed or the service stops."""
    _current(pipeline, camera_id, overlay)  # 404 / 503 before the stream starts

    async def parts() -> AsyncIterator[bytes]:
        last: object = None
        while (pipe := st.pipeline) is not None:
            try:
                image = picture(pipe, camera_id, overlay)
            except KeyError:  # removed
                return
            key = image[0] if isinstance(image, tuple) else image
            if image is not None and key is not last:
                last = key
                data = await run_in_threadpool(render, image)
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                       .encode() + data + b"\r\n")
            # Starlette cancels this generator when the client disconnects.
            await asyncio.sleep(1.0 / STREAM_MAX_FPS)

    return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                             headers={"Cache-Control": "no-store"})
