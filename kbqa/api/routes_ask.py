"""Ask (JSON, or server-sent events) and thumbs up/down feedback on answers."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from kbqa.api.deps import (
    PrincipalDep,
    ReadKb,
    ServicesDep,
    ask_off_loop,
    first_event,
    kb_of,
    make_asker,
)
from kbqa.api.paths import public
from kbqa.api.responses import FastJSON
from kbqa.api.schemas import AskRequest, AskResponse, FeedbackRequest, FeedbackStored
from kbqa.api.state import Services
from kbqa.errors import KbqaError
from kbqa.feedback import FEEDBACK_FILE
from kbqa.kb import KnowledgeBase

log = logging.getLogger(__name__)
router = APIRouter(tags=["search and ask"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: Any) -> str:
    """One server-sent event with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def ask_events(first: tuple[str, Any] | None, events: Iterator, show=lambda d: d) -> Iterator[str]:
    """Asker events as SSE: sources, token..., timings, done; an error event if it fails."""
    try:
        for kind, value in itertools.chain([first] if first else [], events):
            if kind == "sources":
                yield sse("sources", show([h.to_dict() for h in value]))
            elif kind == "token":
                yield sse("token", {"text": value})
            elif kind == "done":
                yield sse("timings", value.timings)
                yield sse("done", show(value.to_dict()))
    except KbqaError as e:
        yield sse("error", {"detail": str(e), "status": e.http_status})
    except Exception:  # noqa: BLE001 - the status line is sent; the client gets an error event
        log.exception("ask stream failed")
        yield sse("error", {"detail": "internal error; see the server log", "status": 500})
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # a client that went away releases the LLM queue slot


@router.post(
    "/v1/kbs/{kb}/ask",
    response_model=AskResponse,
    response_model_exclude_unset=True,  # "debug" only when asked for, as `kbqa ask --json`
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
        401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 503: {},
    },
)  # fmt: skip
async def ask(body: AskRequest, kb: ReadKb, services: ServicesDep):
    """Answer a question from the KB with its sources, as `kbqa ask --json` (or streamed)."""
    if not body.stream:
        return FastJSON(await answer_payload(services, kb, body))  # as built: see routes_search
    history = [tuple(turn) for turn in body.history]
    events = make_asker(services, kb).stream(body.question, body.top_k, history, body.debug)
    # The first event (the sources) before the status line: bad input still gets its 4xx.
    first = await first_event(services, events)
    return StreamingResponse(
        ask_events(first, events, lambda d: public(kb, d)),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def answer_payload(services: Services, kb: KnowledgeBase | str, body: AskRequest) -> dict:
    """The response body of an answer not streamed (this route's, and kbqa.api.hot's, which
    names the KB)."""
    history = [tuple(turn) for turn in body.history]

    def answer() -> dict:  # in the query thread: see kbqa.api.deps.run_query
        found = kb_of(services, kb)
        with found.store.pinned():  # the answer and its public paths: one generation read
            asked = make_asker(services, found).ask(body.question, body.top_k, history, body.debug)
            return public(found, asked.to_dict())

    return await ask_off_loop(services, answer)


@router.post(
    "/v1/kbs/{kb}/feedback",
    response_model=FeedbackStored,
    status_code=201,
    responses={401: {}, 403: {}, 404: {}, 422: {}},
)
def feedback(body: FeedbackRequest, kb: ReadKb, services: ServicesDep, who: PrincipalDep) -> dict:
    """Store a thumbs up/down on an answer (append-only feedback.jsonl, for evaluation)."""
    record = {
        "time": time.time(),
        "kb": kb.name,
        "key": who.name,
        **body.model_dump(),
    }
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with services.feedback_lock, open(kb.folder / FEEDBACK_FILE, "a", encoding="utf-8") as f:
        f.write(line)
    return {"kb": kb.name, "stored": True}
