"""Issue 17 item 8: the manifest records the versions that shape the indexes, and the lexical
index is rebuilt (the dense one kept) when one that shapes its tokens differs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fakes import HashEmbedder

from kbqa.config import IngestConfig, SplitConfig
from kbqa.kb import KnowledgeBase
from kbqa.retrieval.lexical import LexicalIndex
from kbqa.store.chunks import ChunkStore
from kbqa.store.indexes import Indexes
from kbqa.store.manifest import Manifest, index_versions, lexical_drift


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A small FAISS KB, checkpointed: its folder."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.txt").write_text("年假每年十五天，入职满一年后开始享受。", encoding="utf-8")
    (docs / "pay.txt").write_text("报销需要在三十天内提交发票和审批单。", encoding="utf-8")
    emb = HashEmbedder()
    kb = KnowledgeBase.open_or_create(tmp_path / "home", "v", emb, "test", SplitConfig())
    kb.ingest(sorted(docs.iterdir()), emb, IngestConfig())
    kb.close()
    return tmp_path / "home" / "v"


def _set_version(folder: Path, **versions: str | None) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for name, value in versions.items():
        if value is None:
            data["versions"].pop(name)
        else:
            data["versions"][name] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def _open(folder: Path, monkeypatch) -> tuple[Indexes, bool, dict[str, int]]:
    """Indexes.open on the folder, counting saved-lexical loads and dense rebuilds."""
    seen = {"lexical_loads": 0, "vector_reads": 0}
    load, iter_vectors = LexicalIndex.load, ChunkStore.iter_vectors

    def counted_load(folder):
        seen["lexical_loads"] += 1
        return load(folder)

    def counted_vectors(self, dim, *a, **kw):
        seen["vector_reads"] += 1
        return iter_vectors(self, dim, *a, **kw)

    monkeypatch.setattr(LexicalIndex, "load", staticmethod(counted_load))
    monkeypatch.setattr(ChunkStore, "iter_vectors", counted_vectors)
    store = ChunkStore(folder)
    try:
        indexes, rebuilt = Indexes.open(folder, store, Manifest.load(folder))
        chunks = len(store.chunk_ids())
    finally:
        store.close()
    assert len(indexes.lexical.ids) == chunks == len(indexes.dense)
    return indexes, rebuilt, seen


def test_checkpoints_record_the_versions_that_shape_the_indexes(built: Path) -> None:
    versions = Manifest.load(built).versions
    assert versions == index_versions()
    assert set(versions) >= {"kbqa", "jieba", "faiss", "opencc"}
    assert all(isinstance(v, str) and v for v in versions.values())


def test_same_versions_reuse_both_saved_indexes(built: Path, monkeypatch) -> None:
    _, rebuilt, seen = _open(built, monkeypatch)
    assert not rebuilt and seen == {"lexical_loads": 1, "vector_reads": 0}


def test_a_jieba_upgrade_rebuilds_the_lexical_index_not_the_dense_one(
    built: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    _set_version(built, jieba="0.0.1")
    with caplog.at_level(logging.WARNING, logger="kbqa.store.indexes"):
        indexes, rebuilt, seen = _open(built, monkeypatch)
    assert rebuilt
    assert seen == {"lexical_loads": 0, "vector_reads": 0}  # tokenised afresh; dense kept
    notice = [r.getMessage() for r in caplog.records if "lexical index" in r.getMessage()]
    assert notice and f"jieba 0.0.1 -> {index_versions()['jieba']}" in notice[0]
    assert indexes.lexical.search("年假", 1)  # the rebuilt index answers


@pytest.mark.parametrize("name", ["kbqa", "opencc"])
def test_kbqa_or_opencc_changes_rebuild_the_lexical_index(name, built: Path, monkeypatch) -> None:
    _set_version(built, **{name: "0.0.0-old"})
    _, rebuilt, seen = _open(built, monkeypatch)
    assert rebuilt and seen["lexical_loads"] == 0 and seen["vector_reads"] == 0


def test_a_faiss_change_rebuilds_nothing(built: Path, monkeypatch) -> None:
    _set_version(built, faiss="1.0.0")
    _, rebuilt, seen = _open(built, monkeypatch)
    assert not rebuilt and seen == {"lexical_loads": 1, "vector_reads": 0}


def test_a_manifest_from_before_versions_is_trusted(built: Path, monkeypatch) -> None:
    data = json.loads((built / "manifest.json").read_text(encoding="utf-8"))
    del data["versions"]
    (built / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    assert lexical_drift(Manifest.load(built)) == []
    _, rebuilt, _ = _open(built, monkeypatch)
    assert not rebuilt


def test_the_next_writer_saves_the_rebuilt_index_and_the_new_versions(
    built: Path, tmp_path: Path
) -> None:
    _set_version(built, jieba="0.0.1", faiss=None)
    emb = HashEmbedder()
    kb = KnowledgeBase.open(built.parent, "v")
    more = tmp_path / "more.txt"
    more.write_text("加班需要提前申请，并由直属经理批准。", encoding="utf-8")
    kb.ingest([more], emb, IngestConfig())
    kb.close()
    manifest = Manifest.load(built)
    assert manifest.versions == index_versions() and lexical_drift(manifest) == []
    saved = LexicalIndex.load(built)
    assert saved is not None and saved.search("加班", 1)
