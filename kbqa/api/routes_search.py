"""Search: the passages of a KB that best match a query, as `kbqa search --json`."""

from __future__ import annotations

from fastapi import APIRouter

from kbqa.api.deps import ReadKb, ServicesDep, kb_of, make_retriever, run_query
from kbqa.api.paths import public
from kbqa.api.responses import FastJSON
from kbqa.api.schemas import SearchRequest, SearchResponse
from kbqa.api.state import Services
from kbqa.kb import KnowledgeBase

router = APIRouter(tags=["search and ask"])


@router.post(
    "/v1/kbs/{kb}/search",
    response_model=SearchResponse,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def search(body: SearchRequest, kb: ReadKb, services: ServicesDep) -> FastJSON:
    """Hybrid search (dense + BM25); ``score`` is the cosine similarity to the query."""
    # Sent as built (the shape `kbqa search --json` prints); response_model is the documented
    # schema, and validating our own dict against it again cost CPU on every request.
    return FastJSON(await search_payload(services, kb, body))


async def search_payload(services: Services, kb: KnowledgeBase | str, body: SearchRequest) -> dict:
    """The response body of a search (this route's, and kbqa.api.hot's, which names the KB)."""
    top_k = body.top_k or services.settings.top_k

    def hits() -> list[dict]:  # in the query thread: see kbqa.api.deps.run_query
        found = kb_of(services, kb)
        with found.store.pinned():  # the hits and their public paths: one generation read
            found_hits = make_retriever(services, found).search(body.query, top_k)
            return public(found, [h.to_dict() for h in found_hits])

    return {"query": body.query, "hits": await run_query(services, hits, waits=False)}
