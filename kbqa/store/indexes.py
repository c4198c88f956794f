"""The derived indexes of a KB, kept in step with the chunk store and rebuilt from it when stale."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kbqa.errors import Conflict, KbqaError
from kbqa.retrieval.lexical import LexicalIndex
from kbqa.store.base import VectorStore
from kbqa.store.chunks import ChunkStore
from kbqa.store.dense import dense_store, is_remote
from kbqa.store.manifest import Manifest, lexical_drift

log = logging.getLogger(__name__)


class Indexes:
    """Dense index (FAISS, or Milvus) and lexical index (BM25) over the chunks of one KB."""

    def __init__(self, dense: VectorStore, lexical: LexicalIndex | None = None) -> None:
        self.dense = dense
        self.lexical = lexical if lexical is not None else LexicalIndex()

    def add(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        self.dense.add(ids, vectors)
        self.lexical.add(ids, texts)

    def remove(self, ids: np.ndarray) -> None:
        self.dense.remove(ids)
        self.lexical.remove(ids)

    def save(self, folder: Path) -> None:
        self.dense.optimise()
        self.dense.save(folder)
        self.lexical.save(folder)

    @classmethod
    def open(
        cls, folder: Path, store: ChunkStore, manifest: Manifest, repair: bool = False
    ) -> tuple[Indexes, bool]:
        """Load the saved indexes if they reflect the store's generation, else rebuild them.

        Returns (indexes, rebuilt). A mismatch means a writer stopped between committing to
        SQLite and checkpointing the indexes (or is doing so right now). A remote dense store
        (Milvus) is shared, not rebuilt in memory: only a writer (``repair``, under the KB's
        lock) syncs it with SQLite; readers drop its vectors that have no committed chunk.
        """
        drift = _drift(folder, manifest)
        if is_remote(manifest):
            stale = manifest.generation != store.generation()
            dense = dense_store(manifest, store, writer=repair, stale=stale)
            lexical = None if stale or drift else LexicalIndex.load(folder)
            rebuilt = stale or lexical is None
            if lexical is None:
                lexical = _lexical(folder, store, fresh=drift)
            return cls(dense, lexical), rebuilt
        if manifest.generation == store.generation():
            dense = _load_or_none(
                folder, "dense.faiss", lambda: dense_store(manifest, store, folder)
            )
            load = lambda: LexicalIndex.load(folder)  # noqa: E731
            lexical = None if drift else _load_or_none(folder, "lexical.npz", load)
            # The checkpoint that wrote the index recorded its chunk count in the manifest: a
            # file cut short (or swapped) disagrees. Not SQLite's live count, which a writer
            # may have moved on since.
            chunks = manifest.counts.get("chunks")
            if dense is not None and chunks is not None and len(dense) != chunks:
                log.warning(
                    "%s/dense.faiss holds %d vectors but its checkpoint had %d chunks; "
                    "rebuilding it from chunks.sqlite", folder, len(dense), chunks,
                )  # fmt: skip
                dense = None
            if dense is not None and lexical is not None:
                return cls(dense, lexical), False
            if dense is not None:  # a KB from before the lexical index, or a damaged one
                return cls(dense, _lexical(folder, store, fresh=True)), True
        else:
            # A writer committed since its last checkpoint (or is writing now): the saved
            # index plus the difference, not a flat rebuild of everything (issue 14).
            try:
                dense = dense_store(manifest, store, folder)
                if dense is not None:
                    changed = dense.catch_up(store.chunk_ids(), _fetch(store, manifest.dim))
            except (RuntimeError, KbqaError) as exc:  # unreadable or foreign: SQLite decides
                log.warning("saved dense index of %s unusable (%s)", folder, exc)
                dense = None
            if dense is not None:
                log.info("indexes of %s caught up with the chunk store (%d)", folder, changed)
                return cls(dense, _lexical(folder, store, fresh=drift)), True
        log.info("indexes of %s lag the chunk store; rebuilding them from it", folder)
        return cls.rebuild(store, manifest, folder), True

    @classmethod
    def rebuild(
        cls,
        store: ChunkStore,
        manifest: Manifest,
        folder: Path | None = None,
        create: bool = False,
    ) -> Indexes:
        """Indexes from the chunk store; ``create``: the KB is new (a remote collection too).

        A saved lexical index is reused (only missing chunks tokenised) unless the versions
        that shape its tokens changed (kbqa.store.manifest.lexical_drift).
        """
        fresh = folder is None or bool(lexical_drift(manifest))
        dense = dense_store(manifest, store, writer=True, stale=True, create=create)
        assert dense is not None  # folder None: a new store, never a missing file
        if is_remote(manifest):  # the writer's open synced it with SQLite already
            return cls(dense, _lexical(folder, store, fresh=fresh))
        for ids, vectors in store.iter_vectors(manifest.dim):
            dense.add(ids, vectors)
        return cls(dense, _lexical(folder, store, fresh=fresh))


def _drift(folder: Path, manifest: Manifest) -> bool:
    """True (with a warning) when the lexical index was built by other tokenising versions."""
    drift = lexical_drift(manifest)
    if drift:
        log.warning(
            "the lexical index of %s was built with %s; rebuilding it from chunks.sqlite "
            "(the dense index is kept)", folder, ", ".join(drift),
        )  # fmt: skip
    return bool(drift)


def _load_or_none(folder: Path, name: str, load):
    """A saved index, or None when it is missing or damaged (with a warning: it is rebuilt).

    chunks.sqlite holds every chunk and vector, so a truncated or corrupt index file costs a
    rebuild, never the KB; readers rebuild in memory, the next writer saves the repaired file.
    """
    try:
        return load()
    except Conflict:
        raise  # another dimension: a different model's index, not damage
    except Exception as e:  # noqa: BLE001 - faiss raises RuntimeError, numpy ValueError/OSError/...
        log.warning(
            "%s/%s is damaged (%s: %s); rebuilding it from chunks.sqlite",
            folder, name, type(e).__name__, str(e).strip().splitlines()[0] if str(e) else "",
        )  # fmt: skip
        return None


def _fetch(store: ChunkStore, dim: int, batch: int = 5000):
    """ids -> (ids, vectors) of those still stored (a writer may delete some meanwhile)."""

    def fetch(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        id_parts, vec_parts = [], []
        for i in range(0, len(ids), batch):  # SQLite caps the number of bound parameters
            part = [int(x) for x in ids[i : i + batch]]
            vecs = store.vectors_of(part, dim)
            found = np.any(vecs != 0, axis=1)  # unit vectors; zeros mean "no longer stored"
            id_parts.append(np.asarray(part, np.int64)[found])
            vec_parts.append(vecs[found])
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    return fetch


def _lexical(folder: Path | None, store: ChunkStore, fresh: bool) -> LexicalIndex:
    """The lexical index caught up with the store.

    Tokenising is the slow part of a rebuild (jieba, ~1 ms a chunk), so a stale saved index is
    reused and only the chunks it lacks are tokenised; ids are never reused, so that is exact.
    """
    load = lambda: LexicalIndex.load(folder)  # noqa: E731
    index = None if fresh or folder is None else _load_or_none(folder, "lexical.npz", load)
    index = index or LexicalIndex()

    def texts_for(wanted: np.ndarray):
        for ids, texts in store.iter_texts():
            keep = np.isin(ids, wanted)
            if keep.any():
                yield ids[keep], [t for t, k in zip(texts, keep, strict=True) if k]

    index.catch_up(store.chunk_ids(), texts_for)
    return index
