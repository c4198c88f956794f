"""Health, the chat page at GET /, and the ChatGLM-6B api.py shape at POST /."""

from __future__ import annotations

import datetime
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from kbqa.api.deps import PrincipalDep, ServicesDep, ask_off_loop, check_read, make_asker
from kbqa.api.schemas import GlmRequest, GlmResponse, Health

router = APIRouter()
STATIC = Path(__file__).resolve().parent / "static"


@router.get("/health", response_model=Health, tags=["meta"])
def health(services: ServicesDep) -> dict:
    """Liveness plus what is loaded; needs no key and names no KB."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("kbqa")
    except PackageNotFoundError:
        v = "unknown"
    gen = services.generator
    return {
        "status": "ok",
        "version": v,
        "auth": services.keys.enabled,
        "embedding_model": services.embedder.model_id,
        "llm": gen.name if gen is not None else None,
        "llm_waiting": getattr(gen, "waiting", 0) if gen is not None else 0,
    }


@router.get("/", include_in_schema=False)
def chat_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.post(
    "/",
    response_model=GlmResponse,
    tags=["chatglm-compatible"],
    responses={401: {}, 403: {}, 404: {}, 422: {}},
)
async def chatglm(body: GlmRequest, services: ServicesDep, who: PrincipalDep) -> dict:
    """ChatGLM-6B ``api.py``: ``{"prompt", "history"}`` answered from the default KB."""
    name = services.settings.default_kb
    check_read(who, name)
    asker = make_asker(services, services.kbs.get(name))
    history = [tuple(turn) for turn in body.history or []]
    answer = await ask_off_loop(services, asker, body.prompt, None, history)
    return {
        "response": answer.answer,
        "history": [*history, (body.prompt, answer.answer)],
        "status": 200,
        "time": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    }
