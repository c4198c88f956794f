"""The LlamaIndex retriever inside a small query engine (a mock LLM: no weights)."""

from __future__ import annotations

import pytest

from kbqa.config import IngestConfig, SplitConfig
from kbqa.kb import KnowledgeBase
from tests.fakes import HashEmbedder

pytest.importorskip("llama_index.core")


def test_retriever_in_a_query_engine(tmp_path):
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    from kbqa.li_retriever import KbqaLlamaRetriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "travel.txt").write_text("出差补贴每天100元。住宿每晚600元。", encoding="utf-8")
    (docs / "vpn.txt").write_text("VPN客户端可在IT门户下载。", encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "company", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    kb.close()
    retriever = KbqaLlamaRetriever.from_kb(
        "company", tmp_path / "home", embedder=e, refuse=False, search_kwargs={"k": 1}
    )
    (node,) = retriever.retrieve("出差补贴多少")
    assert "100元" in node.node.get_content() and node.metadata["source"].endswith("travel.txt")
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(max_tokens=8))
    response = engine.query("出差补贴多少")
    assert response.source_nodes[0].node.metadata["source"].endswith("travel.txt")
    strict = KbqaLlamaRetriever.from_kb("company", tmp_path / "home", embedder=e,
                                        refusal_threshold=1.1)  # fmt: skip
    assert strict.retrieve("出差补贴多少") == []
