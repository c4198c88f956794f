"""Request body limits, enforced on the stream so a huge body is refused, not buffered."""

from __future__ import annotations

import asyncio
import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_PATH = re.compile(r"^/v1/kbs/[^/]+/documents/?$")
PART_SLACK = 64 * 1024  # multipart headers of one part, on top of the file itself
UPLOAD_WAIT_SECONDS = 30.0  # an upload beyond the concurrency cap waits this long, then 503


def _message(limit: int, what: str = "request body", settings: str = "KBQA_MAX_BODY_KB") -> str:
    return f"{what} larger than {limit / 2**20:.3g} MB; see {settings}"


class _TooLarge(HTTPException):
    """An HTTPException, so the body parsers let it through and it becomes a 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class _PartCounter:
    """Bytes since the last multipart boundary: the size of the part being received.

    Starlette spools every uploaded file to a temporary file before the route runs, so the
    per-file limit has to be applied here, while the bytes arrive, or a 900 MB file fills /tmp
    before its 413. Counting between boundaries needs no parsing; part headers are the slack.
    """

    def __init__(self, boundary: bytes, limit: int) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.limit = limit
        self.tail = b""
        self.part = 0

    def feed(self, data: bytes) -> bool:
        """False once the current part has passed the limit."""
        buf = self.tail + data
        last = buf.rfind(self.delimiter)
        # A delimiter cannot fit in the kept tail alone, so what follows one is all new data.
        self.part = len(buf) - last - len(self.delimiter) if last >= 0 else self.part + len(data)
        self.tail = buf[-(len(self.delimiter) - 1) :]
        return self.part <= self.limit


def _declared(scope: Scope) -> tuple[int | None, bool]:
    """(the Content-Length the client declared, or None; whether the body is chunked)."""
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    return declared, b"transfer-encoding" in headers


def _declared_within(scope: Scope, limit: int) -> bool:
    """A Content-Length of at most ``limit`` and no chunked body (which has no length)."""
    declared, chunked = _declared(scope)
    return declared is not None and not chunked and declared <= limit


def _boundary(scope: Scope) -> bytes | None:
    content_type = dict(scope["headers"]).get(b"content-type", b"")
    match = re.search(rb'boundary="?([^";]+)"?', content_type)
    return match.group(1) if match else None


class BodyLimit:
    """413 for a body over its limit, while it streams in; a cap on uploads at a time.

    Uploads: each file at most ``max_file`` bytes and the whole request at most ``max_upload``;
    any other body at most ``max_body``. At most ``max_concurrent`` uploads are received at
    once (each spools to disk): more wait, then get a 503.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        max_upload: int,
        max_file: int | None = None,
        max_concurrent: int = 4,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_file = max_file
        self.max_concurrent = max_concurrent
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and bool(UPLOAD_PATH.match(scope["path"]))
        if not upload:
            if _declared_within(scope, self.max_body):
                # The server frames the body by its Content-Length, so nothing beyond it can
                # arrive: no need to count the stream (two wrappers less on every search/ask).
                await self.app(scope, receive, send)
            else:
                await self._limited(scope, receive, send, self.max_body, None)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        try:
            await asyncio.wait_for(self._slots.acquire(), UPLOAD_WAIT_SECONDS)
        except TimeoutError:
            await _respond(
                send, 503,
                f"more than {self.max_concurrent} uploads at once; try again shortly "
                "(KBQA_MAX_CONCURRENT_UPLOADS)",
                [(b"retry-after", b"5")],
            )  # fmt: skip
            return
        try:
            boundary = _boundary(scope)
            parts = (
                _PartCounter(boundary, self.max_file + PART_SLACK)
                if boundary and self.max_file is not None
                else None
            )
            await self._limited(scope, receive, send, self.max_upload, parts)
        finally:
            self._slots.release()

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, limit: int, parts: _PartCounter | None
    ) -> None:
        total = "upload" if parts is not None else "request body"
        total_settings = "KBQA_MAX_UPLOAD_TOTAL_MB" if parts is not None else "KBQA_MAX_BODY_KB"
        declared, _ = _declared(scope)
        if declared is not None and declared > limit:
            await _respond(send, 413, _message(limit, total, total_settings))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen += len(body)
                if seen > limit:
                    raise _TooLarge(_message(limit, total, total_settings))
                if parts is not None and not parts.feed(body):
                    file_limit = parts.limit - PART_SLACK
                    raise _TooLarge(
                        _message(file_limit, "an uploaded file is", "KBQA_MAX_UPLOAD_MB")
                    )
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except _TooLarge as e:
            if not started:
                await _respond(send, 413, e.detail)


async def _respond(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
