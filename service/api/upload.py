"""Receive a clip upload safely: admit it to a bounded queue, stream it to a server-named temp file with a size cap.

- `UploadQueue`: at most `upload_workers` clips are scored at once and `upload_queue` more wait (being received
  or queued); one more is refused with 503 and Retry-After before its body is read, so uploads cannot pile up
  temp files, file handles and CPU behind the live cameras.
- The size cap holds while the body streams (Content-Length is checked first, but a chunked or lying body is
  cut off as soon as it passes the cap): nothing is buffered whole in memory.
- The client's file name is ignored; the file lands in data_dir/tmp under a random name and the caller
  deletes it (after service.clips.sniff_container has checked its container).
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

MULTIPART_SLACK = 64 * 1024  # boundaries and part headers on top of the clip itself
FIELD = "file"


class UploadError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many uploads in progress; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    """The client disconnected while its upload waited or was scored."""


class UploadQueue:
    """Places for uploads in progress (`workers` scoring + `waiting`), and the scoring slots. Used from the
    event loop only."""

    POLL_S = 0.25  # how often a waiting or scoring upload checks that its client is still there

    def __init__(self, workers: int, waiting: int) -> None:
        self.places = workers + waiting
        self.workers = workers
        self.held = 0
        self._slots = asyncio.Semaphore(workers)
        self._mean_s = 5.0  # running mean of a clip's scoring time: the Retry-After estimate

    def retry_after_s(self) -> int:
        return max(1, min(300, math.ceil(self._mean_s * self.held / self.workers)))

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """A place in the queue, or QueueFull."""
        if self.held >= self.places:
            raise QueueFull(self.retry_after_s())
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    @contextlib.asynccontextmanager
    async def slot(self, gone: Callable[[], Awaitable[bool]]) -> AsyncIterator[None]:
        """A scoring slot; ClientGone when `gone()` says the client left while waiting for one."""
        while True:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.POLL_S)
                break
            except TimeoutError:
                if await gone():
                    raise ClientGone() from None
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._slots.release()
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - t0)


def _too_large(max_bytes: int) -> UploadError:
    return UploadError(413, f"upload larger than the limit of {max_bytes / 2**20:g} MB (max_upload_mb)")


async def receive_upload(request: Request, tmp_dir: Path, max_bytes: int) -> Path:
    """Stream the request body's clip into a new file under tmp_dir; returns its path (caller deletes it)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + MULTIPART_SLACK:
        raise _too_large(max_bytes)
    ctype, params = parse_options_header(request.headers.get("content-type"))
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".bin", dir=tmp_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if ctype == b"multipart/form-data":
                if not params.get(b"boundary"):
                    raise UploadError(400, "multipart/form-data without a boundary")
                got = await _stream_multipart(request, params[b"boundary"], out, max_bytes)
            else:
                got = await _stream_raw(request, out, max_bytes)
        if got is None:
            raise UploadError(422, f"multipart body has no '{FIELD}' field with the clip")
        if got == 0:
            raise UploadError(422, "the uploaded clip is empty")
        return path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


async def _stream_raw(request: Request, out: BinaryIO, max_bytes: int) -> int:
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > max_bytes:
            raise _too_large(max_bytes)
        out.write(chunk)
    return n


class _FilePart:
    """python-multipart callbacks that copy the first part named FIELD into `out`, with the size cap."""

    def __init__(self, out: BinaryIO, max_bytes: int) -> None:
        self.out, self.max_bytes = out, max_bytes
        self.field, self.value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.active = self.found = False
        self.written = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def on_headers_finished(self) -> None:
        _, disp = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.active = disp.get(b"name") == FIELD.encode() and not self.found
        self.found = self.found or self.active
        self.headers = {}

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.active:
            self.written += end - start
            if self.written > self.max_bytes:
                raise _too_large(self.max_bytes)
            self.out.write(data[start:end])

    def on_part_end(self) -> None:
        self.active = False


async def _stream_multipart(request: Request, boundary: bytes, out: BinaryIO, max_bytes: int) -> int | None:
    part = _FilePart(out, max_bytes)
    parser = MultipartParser(boundary, {  # type: ignore[arg-type]
        name: getattr(part, name) for name in ("on_header_field", "on_header_value", "on_header_end",
                                               "on_headers_finished", "on_part_data", "on_part_end")})
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes + MULTIPART_SLACK:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as e:  # python-multipart's MultipartParseError and friends
        raise UploadError(400, f"malformed multipart body: {e}") from e
    return part.written if part.found else None
