"""Errors as JSON: ``{"detail": ...}`` everywhere, OpenAI's ``{"error": {...}}`` under its paths.

The OpenAI SDKs read ``error.message`` into the exception they raise; with ``detail`` they
show only "Error code: 404", so a client never learns what to fix.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kbqa.errors import KbqaError

OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")

# status -> (OpenAI error type, code), after the codes OpenAI's own API sends.
_KINDS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "invalid_request"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """The body OpenAI sends: ``openai_error(404, "no KB")["error"]["type"]`` is invalid_request_error."""
    kind, code = _KINDS.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _validation_text(errors: list[dict]) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors
    )


class _AsciiJSON(JSONResponse):
    """JSON with non-ASCII escaped: an error may echo the input, and a lone surrogate in it
    ("\\ud800" in a JSON string) cannot be encoded as UTF-8, which made a 500 of a 422."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, default=str).encode("ascii")


def _respond(request: Request, status: int, detail: Any, headers=None) -> JSONResponse:
    if request.url.path.startswith(OPENAI_PATHS):
        text = _validation_text(detail) if isinstance(detail, list) else str(detail)
        return _AsciiJSON(openai_error(status, text), status_code=status, headers=headers)
    return _AsciiJSON({"detail": detail}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """The one translation of errors to HTTP: a library error's message already says what to do."""

    @app.exception_handler(KbqaError)
    async def kbqa_error(request: Request, exc: KbqaError) -> JSONResponse:
        return _respond(request, exc.http_status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _respond(request, exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        from fastapi.encoders import jsonable_encoder

        return _respond(request, 422, jsonable_encoder(exc.errors()))
