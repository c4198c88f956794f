"""FastAPI dependencies: the services, the caller's key, and KBs checked against its scopes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from kbqa.api.security import OPEN, Principal, anonymous, public_kbs
from kbqa.api.state import Services
from kbqa.kb import KnowledgeBase

_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in the thread pool, a thread hop each, five per request (with Hit.to_dict's fix,
# HTTP went from 0.70x to 0.75x of in-process throughput; docs/benchmarks.md). They only read
# memory (and, once per KB, open its SQLite file), so they are safe on the event loop.


async def get_principal(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The caller: anyone on an open server, else the owner of a valid key (401 otherwise)."""
    return principal_of(services, header or (bearer.credentials if bearer else None))


def principal_of(services: Services, presented: str | None) -> Principal:
    """The owner of the ``presented`` key (X-API-Key, else the bearer token), as above.

    Without a key, a server with KBQA_PUBLIC_KBS gives an anonymous reader of those KBs.
    """
    if not services.keys.enabled:
        return OPEN
    if not presented:
        public = public_kbs(services.settings.public_kbs)
        if public:
            return anonymous(public)
        raise _need_key()
    principal = services.keys.lookup(presented)
    if principal is None:
        raise HTTPException(
            401, "this API key is not valid", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


def _need_key() -> HTTPException:
    return HTTPException(
        401,
        "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
        headers={"WWW-Authenticate": "Bearer"},
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]
KbPath = Annotated[str, Path(description="Knowledge base name.", max_length=64)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.admin:
        if principal.anonymous:
            raise _need_key()
        raise HTTPException(403, "this needs an admin API key (KB management)")
    return principal


def check_read(principal: Principal, kb: str) -> None:
    if not principal.can_read(kb):
        if principal.anonymous:
            raise _need_key()  # a KB that is not public: a key may open it
        raise HTTPException(403, f"this API key may not read knowledge base {kb!r}")


def check_write(principal: Principal, kb: str) -> None:
    if not principal.can_write(kb):
        if principal.anonymous:
            raise _need_key()
        raise HTTPException(403, f"this API key may not write to knowledge base {kb!r}")


async def readable_kb(kb: KbPath, principal: PrincipalDep, services: ServicesDep) -> KnowledgeBase:
    """The KB named in the path, if the caller may read it (403) and it exists (404)."""
    check_read(principal, kb)
    return services.kbs.get(kb)


async def writable_kb(kb: KbPath, principal: PrincipalDep, services: ServicesDep) -> KnowledgeBase:
    check_write(principal, kb)
    return services.kbs.get(kb)


ReadKb = Annotated[KnowledgeBase, Depends(readable_kb)]
WriteKb = Annotated[KnowledgeBase, Depends(writable_kb)]
AdminDep = Annotated[Principal, Depends(require_admin)]


def make_retriever(services: Services, kb: KnowledgeBase):
    from kbqa.retrieval.retriever import Retriever

    return Retriever(kb, services.embedder, services.settings.retrieve_config())


def make_asker(services: Services, kb: KnowledgeBase, **shape: Any):
    """An Asker; ``shape`` (generation=, system=) is a client's sampling and instruction."""
    from kbqa.ask import Asker

    return Asker(
        kb, services.embedder, services.generator, services.prompts,
        services.settings.ask_config(), **shape,
    )  # fmt: skip


def generation_config(
    services: Services,
    *,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: Any = None,
):
    """A client's sampling fields over the server's defaults; None when it sent none.

    ``max_new_tokens`` never exceeds KBQA_MAX_NEW_TOKENS (the server's budget for one answer).
    """
    from kbqa.llm.base import GenerationConfig

    if max_new_tokens is None and temperature is None and top_p is None and not stop:
        return None
    cap = services.settings.max_new_tokens
    base = GenerationConfig(max_new_tokens=cap)
    return GenerationConfig(
        max_new_tokens=min(cap, max_new_tokens) if max_new_tokens else cap,
        temperature=base.temperature if temperature is None else temperature,
        top_p=base.top_p if top_p is None else top_p,
        stop=tuple([stop] if isinstance(stop, str) else (stop or ())),
    )


T = TypeVar("T")


async def run_query(services: Services, fn: Callable[..., T], *args: Any, waits: bool) -> T:
    """Run a search or an answer off the event loop, on the pool that suits it.

    What turns the result into a response body goes in ``fn`` too, where it touches the KB's
    files (its lookup, public paths): a system call gives up the interpreter lock, and the loop
    thread waited for SQLite and for the lock again while every other request's I/O waited
    behind it (docs/benchmarks.md, issue 14).

    Retrieval and extractive answers are CPU work under one interpreter lock: a pool of one
    thread per core serves them fastest, where anyio's 40-thread pool had the threads fight
    over the lock (on 2 cores: 0.72x of the in-process throughput against 1.14x, server CPU
    6.3 -> 4.0 ms a request; docs/benchmarks.md). Work that ``waits`` (an answer from a local
    or remote LLM, spent mostly in the LLM queue or on the network) goes to anyio's large pool,
    so a long generation never holds up searches.
    """
    if waits:
        return await run_in_threadpool(fn, *args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(services.query_pool, functools.partial(fn, *args))


async def ask_off_loop(services: Services, work: Callable[[], T]) -> T:
    """An answer (``work``, which calls ``Asker.ask``) off the loop: it waits (large pool) only
    when an LLM answers."""
    return await run_query(services, work, waits=services.generator is not None)


def kb_of(services: Services, kb: KnowledgeBase | str) -> KnowledgeBase:
    """``kb``, or the KB of that name: kbqa.api.hot leaves the lookup (a stat of its files) to
    the query thread, as the body is built there (see run_query)."""
    return services.kbs.get(kb) if isinstance(kb, str) else kb


async def first_event(services: Services, events: Any) -> Any:
    """The first event of ``Asker.stream``: the sources, so retrieval only (the small pool)."""
    return await run_query(services, next, events, None, waits=False)
