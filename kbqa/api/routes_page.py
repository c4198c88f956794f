"""What the chat page needs beyond search and ask: suggestions, a passage in its context,
the original file, and the feedback for review."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from kbqa.api.deps import ReadKb, WriteKb
from kbqa.api.paths import public, public_source
from kbqa.errors import NotFound

router = APIRouter(tags=["chat page"])
ERRORS = {401: {}, 403: {}, 404: {}, 422: {}}
Id = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


@router.get("/v1/kbs/{kb}/suggestions", responses=ERRORS)
def suggestions(kb: ReadKb, n: Annotated[int, Query(ge=1, le=20)] = 4) -> dict:
    """Questions to offer on an empty chat: the KB's stored FAQ questions, else its headings."""
    pool = kb.store.faq_questions(200)
    if not pool:
        pool = [f"{h}有哪些规定？" for h in kb.store.headings(200)]
    # A different few on each visit, so the whole FAQ gets seen over time.
    picked = random.sample(pool, min(n, len(pool)))
    return {"kb": kb.name, "suggestions": picked}


@router.get("/v1/kbs/{kb}/chunks/{chunk_id}/context", responses=ERRORS)
def chunk_context(kb: ReadKb, chunk_id: Id, window: Annotated[int, Query(ge=0, le=5)] = 1) -> dict:
    """A passage with its neighbours in the document (``window`` chunks either side)."""
    hits = kb.store.neighbours(chunk_id, window)
    at = next((i for i, h in enumerate(hits) if h.chunk_id == chunk_id), None)
    if at is None:
        raise NotFound(f"no chunk {chunk_id} in knowledge base {kb.name!r}")
    hit = hits[at]
    return {
        "kb": kb.name, "chunk_id": chunk_id, "doc_id": hit.doc_id,
        "source": public_source(kb, hit.source), "metadata": hit.metadata,
        "before": [h.text for h in hits[:at]], "text": hit.text,
        "after": [h.text for h in hits[at + 1 :]],
    }  # fmt: skip


@router.get(
    "/v1/kbs/{kb}/documents/{doc_id}/file",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=FileResponse,
)
def document_file(kb: ReadKb, doc_id: Id) -> FileResponse:
    """The original file of a document (whoever may read the KB may read its files)."""
    doc = kb.store.document_by_id(doc_id)
    if doc is None:
        raise NotFound(f"no document with id {doc_id} in knowledge base {kb.name!r}")
    path = Path(doc.source)
    if not path.is_file():
        raise HTTPException(
            404, f"the original of {public_source(kb, doc.source)} is no longer on the server"
        )
    return FileResponse(path, filename=path.name)


@router.get("/v1/kbs/{kb}/feedback", responses=ERRORS)
def feedback_review(
    kb: WriteKb,
    vote: Annotated[str | None, Query(pattern="^(up|down)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict:
    """The newest feedback first, with counts (a key that may write the KB; keys left out)."""
    from kbqa.feedback import read_feedback, summary

    records = list(read_feedback(kb.folder, vote))
    newest = [{k: v for k, v in r.items() if k != "key"} for r in reversed(records)][:limit]
    return {"kb": kb.name, **summary(records), "records": public(kb, newest)}
