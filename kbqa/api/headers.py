"""Security headers on every response: CSP, no framing, no MIME sniffing, no referrer leak."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The chat page is same-origin scripts and styles only, no inline script: an answer that quotes
# a hostile document cannot run code even if a future change slipped into innerHTML.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
# FastAPI's Swagger UI / ReDoc pages start their bundle with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


def _headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]


class SecurityHeaders:
    """Pure ASGI (no BaseHTTPMiddleware): streamed answers pass through untouched."""

    PAGE = _headers(PAGE_CSP)  # encoded once, not per request
    DOCS = _headers(DOCS_CSP)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.DOCS if scope["path"].startswith(DOCS_PATHS) else self.PAGE

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
