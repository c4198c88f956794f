"""Derived indexes: a reader behind a concurrent writer catches the saved index up, no flat rebuild."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kbqa.config import IngestConfig, SplitConfig
from kbqa.kb import KnowledgeBase
from kbqa.store.faiss_store import FaissStore, new_index
from kbqa.store.indexes import Indexes
from kbqa.types import Chunk
from tests.fakes import HashEmbedder


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_catch_up_keeps_hnsw_and_matches_the_wanted_ids() -> None:
    rng = np.random.default_rng(0)
    dim = 16
    vecs = _unit(rng, 300, dim)
    store = FaissStore(dim, new_index(dim, "hnsw"))
    store.add(np.arange(1, 201), vecs[:200])
    store.remove(np.array([5, 6]))  # tombstones already there
    wanted = np.concatenate([np.arange(10, 201), np.arange(201, 301)])  # 1-9 gone, 100 new
    by_id = {i + 1: vecs[i] for i in range(300)}
    fetched: list[int] = []

    def fetch(ids):
        fetched.extend(ids.tolist())
        return ids, np.stack([by_id[int(i)] for i in ids])

    changed = store.catch_up(wanted, fetch)
    assert store.kind == "hnsw", "the saved kind is kept, not replaced by a flat rebuild"
    assert fetched == list(range(201, 301)), "only the new vectors are read"
    assert changed == 7 + 100  # 1-4 and 7-9 dropped (5, 6 were tombstones), 100 added
    assert len(store) == len(wanted)
    ids, _ = store.vectors()
    assert sorted(ids.tolist()) == wanted.tolist()
    scores, found = store.search(vecs[250:251], 1)
    assert found[0, 0] == 251 and scores[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_a_reader_behind_a_writer_loads_the_saved_index_instead_of_rebuilding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = HashEmbedder()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("年假每年十五天，入职满一年后开始享受。", encoding="utf-8")
    (docs / "pay.md").write_text("报销需要在三十天内提交发票和审批单。", encoding="utf-8")
    home = tmp_path / "home"
    writer = KnowledgeBase.open_or_create(home, "demo", embedder, "test", SplitConfig())
    writer.ingest([docs], embedder, IngestConfig())
    reader = KnowledgeBase.open(home, "demo")
    assert reader.search("年假", 1, embedder)[0].source.endswith("leave.md")
    # The writer commits to SQLite (one document added, one removed) and has not checkpointed.
    writer.store.begin()
    doc = writer.store.upsert_document("/x/train.md", sha256="0", size=1, mtime=0, loader="md",
                                       status="ok", error=None, chunks=1)  # fmt: skip
    writer.store.add_chunks(
        doc, 0, [Chunk("新员工培训为期三天")], embedder.embed_passages(["新员工培训为期三天"])
    )  # noqa: E501
    pay = writer.store.document(str(docs / "pay.md"))
    writer.store.delete_document(pay.id)
    writer.store.commit()
    assert writer.manifest.generation != writer.store.generation()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a flat rebuild from SQLite")

    monkeypatch.setattr(Indexes, "rebuild", classmethod(no_rebuild))
    loads: list[Path] = []
    real_load = FaissStore.load.__func__

    def counting_load(cls, folder, dim):
        loads.append(folder)
        return real_load(cls, folder, dim)

    monkeypatch.setattr(FaissStore, "load", classmethod(counting_load))
    assert reader.search("新员工培训", 1, embedder)[0].source == "/x/train.md"
    assert loads, "the saved dense index was loaded"
    assert all(not h.source.endswith("pay.md") for h in reader.search("报销发票", 5, embedder))
    assert len(reader.indexes.dense) == reader.store.counts()["chunks"]


def test_an_unreadable_saved_index_falls_back_to_a_rebuild(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("年假每年十五天。", encoding="utf-8")
    home = tmp_path / "home"
    writer = KnowledgeBase.open_or_create(home, "demo", embedder, "test", SplitConfig())
    writer.ingest([docs], embedder, IngestConfig())
    writer.store.begin()
    doc = writer.store.upsert_document("/x/a.md", sha256="0", size=1, mtime=0, loader="md",
                                       status="ok", error=None, chunks=1)  # fmt: skip
    writer.store.add_chunks(doc, 0, [Chunk("培训三天")], embedder.embed_passages(["培训三天"]))
    writer.store.commit()
    (home / "demo" / "dense.faiss").write_bytes(b"not an index")
    reader = KnowledgeBase.open(home, "demo")
    assert reader.search("培训", 1, embedder)[0].source == "/x/a.md"


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_a_large_kb_becomes_ivf_with_exact_scores_tombstones_and_a_saved_kind(tmp_path) -> None:
    rng = np.random.default_rng(0)
    dim, vecs = 16, _unit(np.random.default_rng(0), 2000, 16)
    store = FaissStore(dim)
    store.add(np.arange(2000), vecs)
    store.optimise(large_threshold=1000)
    assert store.kind == "ivf"
    queries = vecs[:50] + 0.05 * rng.standard_normal((50, dim)).astype(np.float32)
    scores, ids = store.search(queries, 10)
    exact = queries @ vecs.T
    truth = np.argsort(-exact, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall >= 0.95
    # Re-ranked on full vectors: cosines to fp16 precision (the flat index it was built from
    # holds fp16 copies), not 8-bit approximations (errors of ~1e-2).
    np.testing.assert_allclose(scores[:, 0], exact[np.arange(50), ids[:, 0]], atol=5e-4)
    store.remove(np.array([ids[0, 0]]))
    assert ids[0, 0] not in store.search(queries[:1], 10)[1][0]
    store.save(tmp_path)
    loaded = FaissStore.load(tmp_path, dim)
    assert loaded.kind == "ivf" and len(loaded) == 1999
    assert ids[0, 0] not in loaded.search(queries[:1], 10)[1][0]
    got_ids, got_vecs = loaded.vectors()
    assert len(got_ids) == 1999 and np.allclose(got_vecs[0], vecs[got_ids[0]], atol=1e-3)


def test_ivf_is_retrained_as_the_kb_grows_and_an_old_hnsw_index_converts() -> None:
    from kbqa.store.faiss_store import _lists

    rng = np.random.default_rng(1)
    store = FaissStore(8)
    store.add(np.arange(400), _unit(rng, 400, 8))
    store.optimise(large_threshold=100)
    before = _lists(store._index)
    store.add(np.arange(400, 2000), _unit(rng, 1600, 8))  # 5x the vectors it was trained on
    store.optimise(large_threshold=100)
    assert store.kind == "ivf" and _lists(store._index) > before and len(store) == 2000
    hnsw = FaissStore(8, new_index(8, "hnsw"))  # what a large KB saved before IVF holds
    hnsw.add(np.arange(300), _unit(rng, 300, 8))
    hnsw.optimise(large_threshold=100)
    assert hnsw.kind == "ivf" and len(hnsw) == 300


def test_a_flat_index_saved_in_fp32_turns_fp16_at_its_next_checkpoint() -> None:
    import faiss

    rng = np.random.default_rng(2)
    vecs = _unit(rng, 50, 8)
    old = FaissStore(8, faiss.IndexIDMap2(faiss.IndexFlatIP(8)))  # how flat KBs were saved
    old.add(np.arange(50), vecs)
    before = old.search(vecs[:5], 3)
    old.optimise()
    assert isinstance(faiss.downcast_index(old._index.index), faiss.IndexScalarQuantizer)
    after = old.search(vecs[:5], 3)
    assert old.kind == "flat" and (after[1] == before[1]).all()
    np.testing.assert_allclose(after[0], before[0], atol=5e-4)
