"""The derived indexes of a KB, kept in step with the chunk store and rebuilt from it when stale."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kbqa.lexical import LexicalIndex
from kbqa.store.chunks import ChunkStore
from kbqa.store.faiss_store import FaissStore
from kbqa.store.manifest import Manifest

log = logging.getLogger(__name__)


class Indexes:
    """Dense index (FAISS) and lexical index (BM25) over the chunks of one KB."""

    def __init__(self, dense: FaissStore, lexical: LexicalIndex | None = None) -> None:
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
        SQLite and checkpointing the indexes (or is doing so right now).
        """
        if manifest.generation == store.generation():
            dense = FaissStore.load(folder, manifest.dim)
            lexical = LexicalIndex.load(folder)
            if dense is not None and lexical is not None:
                return cls(dense, lexical), False
            if dense is not None:  # a KB from before the lexical index: build that one only
                return cls(dense, _lexical(folder, store, fresh=True)), True
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
        dense = FaissStore(manifest.dim)
        for ids, vectors in store.iter_vectors(manifest.dim):
            dense.add(ids, vectors)
        return cls(dense, _lexical(folder, store, fresh=folder is None))


def _lexical(folder: Path | None, store: ChunkStore, fresh: bool) -> LexicalIndex:
    """The lexical index caught up with the store.

    Tokenising is the slow part of a rebuild (jieba, ~1 ms a chunk), so a stale saved index is
    reused and only the chunks it lacks are tokenised; ids are never reused, so that is exact.
    """
    index = None if fresh or folder is None else LexicalIndex.load(folder)
    index = index or LexicalIndex()

    def texts_for(wanted: np.ndarray):
        for ids, texts in store.iter_texts():
            keep = np.isin(ids, wanted)
            if keep.any():
                yield ids[keep], [t for t, k in zip(texts, keep, strict=True) if k]

    index.catch_up(store.chunk_ids(), texts_for)
    return index
