"""The derived indexes of a KB, kept in step with the chunk store and rebuilt from it when stale."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kbqa.store.chunks import ChunkStore
from kbqa.store.faiss_store import FaissStore
from kbqa.store.manifest import Manifest

log = logging.getLogger(__name__)


class Indexes:
    """Dense index (and, from the lexical module, BM25) over the chunks of one KB."""

    def __init__(self, dense: FaissStore) -> None:
        self.dense = dense

    def add(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        self.dense.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        self.dense.remove(ids)

    def save(self, folder: Path) -> None:
        self.dense.save(folder)

    @classmethod
    def open(cls, folder: Path, store: ChunkStore, manifest: Manifest) -> tuple[Indexes, bool]:
        """Load the saved indexes if they reflect the store's generation, else rebuild them.

        Returns (indexes, rebuilt). A mismatch means a writer stopped between committing to
        SQLite and checkpointing the indexes (or is doing so right now).
        """
        if manifest.generation == store.generation():
            dense = FaissStore.load(folder, manifest.dim)
            if dense is not None:
                return cls(dense), False
        log.info("indexes of %s lag the chunk store; rebuilding them from it", folder)
        return cls.rebuild(store, manifest), True

    @classmethod
    def rebuild(cls, store: ChunkStore, manifest: Manifest) -> Indexes:
        dense = FaissStore(manifest.dim)
        for ids, vectors in store.iter_vectors(manifest.dim):
            dense.add(ids, vectors)
        return cls(dense)
