"""The LangChain retriever runs inside a small LCEL chain and carries hit metadata and score."""

from __future__ import annotations

from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from kbqa.config import IngestConfig, SplitConfig
from kbqa.kb import KnowledgeBase
from kbqa.lc_retriever import KbqaRetriever
from kbqa.retrieve import Retriever
from tests.fakes import HashEmbedder


def test_retriever_in_an_lcel_chain(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "travel.txt").write_text("出差补贴每天100元。住宿每晚600元。", encoding="utf-8")
    (docs / "vpn.txt").write_text("VPN客户端可在IT门户下载。", encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    retriever = KbqaRetriever(retriever=Retriever(kb, e), k=1)
    chain = {
        "context": retriever | RunnableLambda(lambda ds: "\n".join(d.page_content for d in ds)),
        "question": RunnablePassthrough(),
    } | RunnableLambda(
        lambda x: f"已知信息:\n{x['context']}\n根据已知信息回答问题:\n{x['question']}"
    )
    prompt = chain.invoke("出差补贴多少")
    assert "出差补贴每天100元" in prompt and prompt.endswith("出差补贴多少")
    (doc,) = retriever.invoke("VPN在哪下载")
    assert doc.metadata["source"].endswith("vpn.txt")
    assert {"chunk_id", "doc_id", "score"} <= set(doc.metadata)
