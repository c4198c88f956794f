"""The LangChain retriever runs inside a small LCEL chain and carries hit metadata and score."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from kbqa.config import IngestConfig, SplitConfig
from kbqa.errors import BadInput, NotFound
from kbqa.kb import KnowledgeBase
from kbqa.lc_retriever import KbqaRetriever
from kbqa.retrieval.retriever import Retriever
from tests.fakes import HashEmbedder


def test_retriever_in_an_lcel_chain(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "travel.txt").write_text("出差补贴每天100元。住宿每晚600元。", encoding="utf-8")
    (docs / "vpn.txt").write_text("VPN客户端可在IT门户下载。", encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    # The hash embedder is not semantic: its relevance says nothing, so no refusal here.
    retriever = KbqaRetriever(retriever=Retriever(kb, e), k=1, refuse=False)
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


def _kb(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "travel.txt").write_text("出差补贴每天100元。住宿每晚600元。", encoding="utf-8")
    (docs / "vpn.txt").write_text("VPN客户端可在IT门户下载。", encoding="utf-8")
    (docs / "leave.txt").write_text("员工每年享有5天带薪年假。", encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "company", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    kb.close()
    return tmp_path / "home", e


def test_from_kb_by_name_and_search_kwargs(tmp_path, monkeypatch):
    home, e = _kb(tmp_path)
    r = KbqaRetriever.from_kb("company", home=home, embedder=e, refuse=False)
    assert len(r.invoke("出差补贴")) == 3
    one = KbqaRetriever.from_kb("company", home=home, embedder=e, refuse=False,
                                search_kwargs={"k": 1})  # fmt: skip
    (doc,) = one.invoke("出差补贴")
    assert doc.metadata["source"].endswith("travel.txt")
    high = KbqaRetriever.from_kb("company", home, embedder=e, refuse=False,
                                 search_kwargs={"score_threshold": 1.01})  # fmt: skip
    assert high.invoke("出差补贴") == []
    # By name through KBQA_HOME, as `KbqaRetriever(kb="company")`.
    monkeypatch.setenv("KBQA_HOME", str(home))
    assert KbqaRetriever(kb="company", embedder=e, refuse=False).invoke("VPN")
    with pytest.raises(BadInput, match="search_kwargs"):
        KbqaRetriever(kb="company", embedder=e, search_kwargs={"top": 1})
    with pytest.raises(BadInput, match="kb="):
        KbqaRetriever()
    with pytest.raises(NotFound):
        KbqaRetriever(kb="nope", embedder=e)


def test_refusal_gives_no_documents(tmp_path):
    home, e = _kb(tmp_path)
    strict = KbqaRetriever.from_kb("company", home, embedder=e, refusal_threshold=1.1)
    assert strict.invoke("出差补贴") == []
    lax = KbqaRetriever.from_kb("company", home, embedder=e, refusal_threshold=-1.0)
    assert lax.invoke("出差补贴")
    # Calibrated by default: an off-topic query gets nothing, where refuse=False still does.
    calibrated = KbqaRetriever.from_kb("company", home, embedder=e)
    off = "量子色动力学的渐近自由"
    assert calibrated.invoke(off) == []
    assert KbqaRetriever.from_kb("company", home, embedder=e, refuse=False).invoke(off)
