"""Search: the passages of a KB that best match a query, as `kbqa search --json`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from kbqa.api.deps import ReadKb, ServicesDep, make_retriever
from kbqa.api.schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["search and ask"])


@router.post(
    "/v1/kbs/{kb}/search",
    response_model=SearchResponse,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def search(body: SearchRequest, kb: ReadKb, services: ServicesDep) -> dict:
    """Hybrid search (dense + BM25); ``score`` is the cosine similarity to the query."""
    top_k = body.top_k or services.settings.top_k
    # In a worker thread: embedding and FAISS release the GIL, so searches run side by side.
    hits = await run_in_threadpool(make_retriever(services, kb).search, body.query, top_k)
    return {"query": body.query, "hits": [h.to_dict() for h in hits]}
