"""A LlamaIndex retriever over a KB (pip install llama-index-core), the twin of lc_retriever."""

from __future__ import annotations

from typing import Any

from kbqa.errors import BadInput

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # an optional integration: say what to install
    raise BadInput("kbqa.li_retriever needs LlamaIndex: pip install llama-index-core") from exc


class KbqaLlamaRetriever(BaseRetriever):
    """Nodes for a query from one KB (score: cosine); none when kbqa would refuse.

    Example: ``RetrieverQueryEngine.from_args(KbqaLlamaRetriever.from_kb("hr", k=3))``.
    Takes the arguments of ``kbqa.lc_retriever.KbqaRetriever`` (kb, home, embedder, k,
    search_kwargs, refuse, refusal_threshold, or retriever=).
    """

    def __init__(self, **kwargs: Any) -> None:
        from kbqa.lc_retriever import KbqaRetriever

        # One implementation of opening, search_kwargs and refusal: the LangChain one.
        self._inner = KbqaRetriever(**kwargs)
        super().__init__()

    @classmethod
    def from_kb(cls, name: str, home: Any = None, **kwargs: Any) -> KbqaLlamaRetriever:
        return cls(kb=name, home=home, **kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        docs = self._inner.invoke(query_bundle.query_str)
        return [
            NodeWithScore(
                node=TextNode(
                    text=d.page_content, id_=f"kbqa-{d.metadata['chunk_id']}", metadata=d.metadata
                ),
                score=float(d.metadata["score"]),
            )
            for d in docs
        ]
