"""Search: the passages of a KB that best match a query, as `kbqa search --json`."""

from __future__ import annotations

from fastapi import APIRouter

from kbqa.api.deps import ReadKb, ServicesDep, make_retriever, run_query
from kbqa.api.paths import public
from kbqa.api.responses import FastJSON
from kbqa.api.schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search and ask"])


@router.post(
    "/v1/kbs/{kb}/search",
    response_model=SearchResponse,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def search(body: SearchRequest, kb: ReadKb, services: ServicesDep) -> FastJSON:
    """Hybrid search (dense + BM25); ``score`` is the cosine similarity to the query."""
    top_k = body.top_k or services.settings.top_k
    retriever = make_retriever(services, kb)
    hits = await run_query(services, retriever.search, body.query, top_k, waits=False)
    # Sent as built (the shape `kbqa search --json` prints); response_model is the documented
    # schema, and validating our own dict against it again cost CPU on every request.
    return FastJSON({"query": body.query, "hits": public(kb, [h.to_dict() for h in hits])})
