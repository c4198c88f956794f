"""Search and ask (JSON, not streamed) past FastAPI's routing and dependency resolution.

These two routes are nearly all of a busy server's requests, and under load FastAPI's
per-request machinery (routing through included routers, eight dependants resolved, its
exception and exit-stack layers) held the interpreter lock that the retrieval needs
(docs/benchmarks.md, issue 14). This layer sits inside kbqa's own middlewares (body limit,
security headers), answers a well-formed request with the routes' own code (the same
principal, scope check, KB lookup, request model and response body), and hands everything
else to the app unchanged: a bad key, a scope error, invalid JSON, a body the model rejects,
a stream or an answer from an LLM, or an error in the work itself, the KB lookup included
(search and ask only read, so the route runs it again and FastAPI's handlers give the usual
4xx/5xx). The routes stay in FastAPI, for OpenAPI and for those cases.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import orjson
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kbqa.api.deps import check_read, principal_of
from kbqa.api.responses import FastJSON
from kbqa.api.routes_ask import answer_payload
from kbqa.api.routes_search import search_payload
from kbqa.api.schemas import AskRequest, SearchRequest

log = logging.getLogger(__name__)

_PATH = re.compile(r"/v1/kbs/([^/]{1,64})/(search|ask)")  # KbPath's max_length is 64
_ROUTES: dict[str, tuple[type[BaseModel], Callable[..., Awaitable[dict]]]] = {
    "search": (SearchRequest, search_payload),
    "ask": (AskRequest, answer_payload),
}


class HotRoutes:
    """Pure ASGI; the app's own routes answer whatever this does not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _hot(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        body, more = await _body(receive)
        payload = None if more else await _answer(scope, match, body)
        if payload is None:
            await self.app(scope, _replay(body, more, receive), send)
            return
        await FastJSON(payload)(scope, receive, send)


def _hot(scope: Scope) -> re.Match | None:
    """The route of a JSON POST to search or ask, else None (the app's routing decides)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    match = _PATH.fullmatch(scope["path"])
    if match is None:
        return None
    content_type = Headers(scope=scope).get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    return match


async def _body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, or what came before a message that is not more of it (a disconnect)."""
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), None


async def _answer(scope: Scope, match: re.Match, body: bytes) -> dict | None:
    """The route's response body, or None where the app must answer (see the module)."""
    kb_name, route = match.group(1), match.group(2)
    services = getattr(scope["app"].state, "services", None)
    if services is None:
        return None
    model, payload = _ROUTES[route]
    try:
        principal = principal_of(services, _presented(scope))
        check_read(principal, kb_name)
        request = model.model_validate(orjson.loads(body))
    except Exception:  # noqa: BLE001 - the app's own dependencies give the error
        return None
    if isinstance(request, AskRequest) and (request.stream or services.generator is not None):
        return None  # streams, and answers an LLM writes (whose time is not HTTP's)
    try:
        return await payload(services, kb_name, request)  # looked up in the query thread
    except Exception:  # noqa: BLE001 - the route runs it again, and its handlers answer
        log.debug("%s on %s failed; the route answers", route, kb_name, exc_info=True)
        return None


def _presented(scope: Scope) -> str | None:
    """The key as kbqa.api.deps.get_principal gets it from FastAPI's two security schemes
    (the same header lookups): X-API-Key, else a bearer token."""
    headers = Headers(scope=scope)
    header = headers.get("x-api-key")
    if header:
        return header
    scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None


def _replay(body: bytes, after: Message | None, receive: Receive) -> Receive:
    """``receive`` for the app: the body already read, then the connection's own messages."""
    pending: list[Message] = [
        {"type": "http.request", "body": body, "more_body": after is not None}
    ]
    if after is not None:
        pending.append(after)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
