"""One factory for a KB's dense store: the manifest names the kind, this returns the store.

As txtai's ANN factory does, every branch on ``manifest.vector_store`` lives here, so the KB
(kbqa.kb) and its indexes (kbqa.store.indexes) ask for "the dense store" and never name a
backend. FAISS is a file rebuilt in memory from SQLite when it lags; Milvus is a shared
collection that only a writer syncs (``is_remote``).
"""

from __future__ import annotations

from pathlib import Path

from kbqa.errors import BadInput
from kbqa.store.base import VectorStore
from kbqa.store.chunks import ChunkStore
from kbqa.store.manifest import Manifest, check_vector_store


def is_remote(manifest: Manifest) -> bool:
    """True for a vector database (Milvus): shared, synced by writers, never rebuilt in memory."""
    return check_vector_store(manifest.vector_store, manifest.name) != "faiss"


def dense_store(
    manifest: Manifest,
    store: ChunkStore,
    folder: Path | None = None,
    *,
    writer: bool = False,
    stale: bool = False,
    create: bool = False,
) -> VectorStore | None:
    """The dense store the manifest names.

    FAISS: the index saved in ``folder`` (None when there is none yet), or a new empty one
    when ``folder`` is None. Milvus: the KB's collection, checked; a ``writer`` (KB lock held)
    syncs it with SQLite when ``stale``; ``create``: the KB is new. An unknown kind raises
    BadInput naming the KB.
    """
    if not is_remote(manifest):
        from kbqa.store.faiss_store import FaissStore

        return FaissStore(manifest.dim) if folder is None else FaissStore.load(folder, manifest.dim)
    from kbqa.store.milvus_store import open_for_kb

    return open_for_kb(manifest, store, create=create, writer=writer, stale=stale)


def creation_settings(name: str, vector_store: str, milvus_uri: str | None) -> dict:
    """The manifest fields a new KB's store needs (where a remote one is, its collection)."""
    if check_vector_store(vector_store, name) == "faiss":
        return {}
    if not milvus_uri:
        raise BadInput(
            "--store milvus needs --milvus-uri: http://host:19530 for a Milvus server, or a "
            "file path ending in .db for embedded milvus-lite"
        )
    from kbqa.store.milvus_client import collection_name, normalise_uri

    return {"milvus_uri": normalise_uri(milvus_uri), "milvus_collection": collection_name(name)}


def drop_dense(manifest: Manifest) -> None:
    """Delete what the dense store keeps outside the KB folder (a Milvus collection)."""
    if is_remote(manifest):
        from kbqa.store.milvus_store import drop_for_kb

        drop_for_kb(manifest)
