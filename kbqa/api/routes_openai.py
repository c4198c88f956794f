"""OpenAI-compatible chat completions; the model ``kbqa/<kb>`` names the knowledge base."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from kbqa.api.deps import (
    PrincipalDep,
    ServicesDep,
    ask_off_loop,
    check_read,
    first_event,
    generation_config,
    make_asker,
)
from kbqa.api.paths import public
from kbqa.api.schemas import ChatCompletionRequest, ChatMessage
from kbqa.api.state import Services
from kbqa.errors import BadInput, KbqaError

router = APIRouter(tags=["openai-compatible"])
PREFIX = "kbqa/"


def _text(message: ChatMessage) -> str:
    if isinstance(message.content, list):  # content parts: only the text ones mean anything here
        return "".join(str(p.get("text", "")) for p in message.content if p.get("type") == "text")
    return message.content or ""


def system_text(messages: list[ChatMessage]) -> str | None:
    """The system (and developer) messages, joined: the instruction for a generative answer."""
    parts = [_text(m).strip() for m in messages if m.role in ("system", "developer")]
    return "\n".join(p for p in parts if p) or None


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[tuple[str, str]]]:
    """(the last user message, earlier user/assistant pairs); see system_text for the rest."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not _text(turns[-1]).strip():
        raise BadInput("messages must end with a non-empty user message (the question)")
    history, pending = [], None
    for m in turns[:-1]:
        if m.role == "user":
            pending = _text(m)
        elif pending is not None:
            history.append((pending, _text(m)))
            pending = None
    return _text(turns[-1]), history


def _kb_of(model: str, services: Services, who) -> Any:
    if not model.startswith(PREFIX):
        raise HTTPException(404, f"unknown model {model!r}: use 'kbqa/<kb>' (see GET /v1/models)")
    name = model[len(PREFIX) :]
    check_read(who, name)
    return services.kbs.get(name)


def _tokens(services: Services, text: str) -> int:
    gen = services.generator
    return gen.count_tokens(text) if gen is not None else len(text)  # characters without an LLM


def _extra(kb, answer) -> dict:
    return public(
        kb, {k: v for k, v in answer.to_dict().items() if k not in ("question", "answer")}
    )


@router.get("/v1/models")
def models(services: ServicesDep, who: PrincipalDep) -> dict:
    """One model per knowledge base this key may read: ``kbqa/<kb>``."""
    from kbqa.kb import list_kbs

    data = [
        {"id": PREFIX + name, "object": "model", "created": 0, "owned_by": "kbqa"}
        for name in list_kbs(services.kbs.home)
        if who.can_read(name)
    ]
    return {"object": "list", "data": data}


@router.post(
    "/v1/chat/completions",
    responses={200: {"content": {"text/event-stream": {}}}, 401: {}, 403: {}, 404: {}, 422: {}},
)
async def chat_completions(body: ChatCompletionRequest, services: ServicesDep, who: PrincipalDep):
    """Answer the last user message from the KB; extra field ``kbqa`` carries the sources."""
    kb = _kb_of(body.model, services, who)
    question, history = split_messages(body.messages)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    if stop and len(stop) > 4:
        raise BadInput(f"stop lists {len(stop)} strings; at most 4")
    generation = generation_config(
        services, max_new_tokens=body.max_tokens or body.max_completion_tokens,
        temperature=body.temperature, top_p=body.top_p, stop=stop,
    )  # fmt: skip
    system = system_text(body.messages)
    asker = make_asker(services, kb, generation=generation, system=system)
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}
    asked = [system or "", question, *(t for turn in history for t in turn)]
    prompt_tokens = sum(_tokens(services, t) for t in asked)

    def usage(text: str) -> dict:
        done = _tokens(services, text)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": done,
                "total_tokens": prompt_tokens + done}  # fmt: skip

    if not body.stream:
        answer = await ask_off_loop(services, lambda: asker.ask(question, None, history))
        return {
            **meta,
            "object": "chat.completion",
            "choices": [{
                "index": 0, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": answer.answer},
            }],
            "usage": usage(answer.answer),
            "kbqa": _extra(kb, answer),
        }  # fmt: skip
    events = asker.stream(question, None, history)
    first = await first_event(services, events)
    # OpenAI sends usage in one last chunk only when stream_options.include_usage asks for it.
    wants = bool((getattr(body, "stream_options", None) or {}).get("include_usage"))
    return StreamingResponse(
        _chunks(kb, meta, first, events, usage if wants else None), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )  # fmt: skip


def _chunks(kb, meta: dict, first, events: Iterator, usage=None) -> Iterator[str]:
    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {**meta, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        sources = [h.to_dict() for h in first[1]] if first and first[0] == "sources" else []
        sources = public(kb, sources)
        yield chunk({"role": "assistant", "content": ""}, kbqa={"sources": sources})
        for kind, value in events:
            if kind == "token":
                yield chunk({"content": value})
            elif kind == "done":
                yield chunk({}, "stop", kbqa=_extra(kb, value))
                if usage is not None:
                    body = {**meta, "object": "chat.completion.chunk", "choices": [],
                            "usage": usage(value.answer)}  # fmt: skip
                    yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
    except KbqaError as e:
        from kbqa.api.errors import openai_error

        yield f"data: {json.dumps(openai_error(e.http_status, str(e)), ensure_ascii=False)}\n\n"
    finally:
        events.close()
    yield "data: [DONE]\n\n"
