"""A LangChain retriever over a KB, so kbqa can sit inside users' own LCEL chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from kbqa.errors import BadInput
from kbqa.retrieval.retriever import Retriever
from kbqa.types import Hit

SEARCH_KWARGS = {"k", "score_threshold"}  # as LangChain's VectorStoreRetriever names them


def hit_document(h: Hit) -> Document:
    """A hit as a LangChain Document: its text, its metadata plus source, ids and cosine."""
    return Document(
        page_content=h.text,
        metadata={
            **h.metadata, "source": h.source, "chunk_id": h.chunk_id, "doc_id": h.doc_id,
            "score": h.score,
        },
    )  # fmt: skip


class KbqaRetriever(BaseRetriever):
    """Documents for a query from one KB; none when kbqa would refuse to answer it.

    Examples: ``KbqaRetriever(kb="company")``, ``KbqaRetriever.from_kb("hr", home="indexes",
    search_kwargs={"k": 3})``, ``KbqaRetriever(retriever=Retriever(kb, embedder), k=4)``.
    ``refuse=False`` returns the best hits even for an off-topic query.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = (
        None  # a kbqa.retrieval.retriever.Retriever (Any: pydantic need not know the class)
    )
    kb: str | None = Field(default=None, description="KB name, opened from home (KBQA_HOME).")
    home: Path | None = None
    embedder: Any = None  # default: KBQA_EMBEDDING_MODEL, else the model the KB was built with
    k: int = Field(default=5, ge=1, le=100)
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    refuse: bool = True  # below the KB's refusal threshold: no documents at all
    refusal_threshold: float | None = None  # None: KBQA_REFUSAL_THRESHOLD, else calibrated

    def model_post_init(self, context: Any) -> None:
        unknown = set(self.search_kwargs) - SEARCH_KWARGS
        if unknown:
            raise BadInput(
                f"search_kwargs: unknown key(s) {sorted(unknown)}; kbqa reads {sorted(SEARCH_KWARGS)}"
            )
        if self.retriever is None:
            if not self.kb:
                raise BadInput("KbqaRetriever needs kb='NAME' (or retriever=Retriever(...))")
            self.retriever = _open(self.kb, self.home, self.embedder)

    @classmethod
    def from_kb(cls, name: str, home: str | Path | None = None, **kwargs: Any) -> KbqaRetriever:
        """The retriever of KB ``name`` under ``home`` (default KBQA_HOME, else ./indexes)."""
        return cls(kb=name, home=Path(home) if home is not None else None, **kwargs)

    def _threshold(self) -> float | None:
        if self.refusal_threshold is not None:
            return self.refusal_threshold
        from kbqa.config import load_settings
        from kbqa.retrieval.refusal import threshold_for

        configured = load_settings().refusal_threshold
        if configured is not None:
            return configured
        cal = threshold_for(self.retriever)
        return cal.threshold if cal else None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        r: Retriever = self.retriever
        k = int(self.search_kwargs.get("k", self.k))
        found = r.retrieve(query, k)
        if self.refuse:
            threshold = self._threshold()
            if threshold is not None and found.relevance < threshold:
                return []  # what kbqa ask would refuse, a chain should not answer from
        floor = self.search_kwargs.get("score_threshold")
        hits = [h for h in found.hits if floor is None or h.score >= floor]
        return [hit_document(h) for h in hits]


def _open(name: str, home: Path | None, embedder: Any) -> Retriever:
    from kbqa.config import load_settings
    from kbqa.kb import KnowledgeBase

    s = load_settings()
    kb = KnowledgeBase.open(Path(home) if home is not None else s.home, name)
    if embedder is None:
        from kbqa.embed.factory import load_embedder

        embedder = load_embedder(s.embedding_model or kb.manifest.embedding_spec, s.embed_config())
    return Retriever(kb, embedder, s.retrieve_config())
