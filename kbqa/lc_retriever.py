"""A LangChain retriever over a KB, so kbqa can sit inside users' own LCEL chains."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from kbqa.retrieve import Retriever


class KbqaRetriever(BaseRetriever):
    """Documents for a query: the hit's text, its metadata plus source, ids and cosine score.

    Example: ``KbqaRetriever(retriever=Retriever(kb, embedder), k=4) | format_docs``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any  # a kbqa.retrieve.Retriever (Any: pydantic need not know the class)
    k: int = 5

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        r: Retriever = self.retriever
        return [
            Document(
                page_content=h.text,
                metadata={
                    **h.metadata,
                    "source": h.source,
                    "chunk_id": h.chunk_id,
                    "doc_id": h.doc_id,
                    "score": h.score,
                },
            )
            for h in r.search(query, self.k)
        ]
