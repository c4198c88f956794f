"""FAISS vector store: IndexIDMap2 over inner product on L2-normalised vectors (= cosine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbqa.errors import Conflict
from kbqa.store.atomic import atomic_write

FILE_NAME = "dense.faiss"


class FaissStore:
    """Flat inner-product index addressed by chunk id; scores are cosine similarity in [-1, 1]."""

    def __init__(self, dim: int, index=None) -> None:
        import faiss

        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise Conflict(
                f"vectors have dimension {vectors.shape[1]} but the index holds {self.dim}; "
                "this KB was built with another embedding model"
            )
        self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self))) if len(self) else k
        if len(self) == 0:
            n = len(queries)
            return np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
        return self._index.search(queries, k)

    def save(self, folder: Path) -> None:
        import faiss

        atomic_write(folder / FILE_NAME, lambda tmp: faiss.write_index(self._index, str(tmp)))

    @classmethod
    def load(cls, folder: Path, dim: int) -> FaissStore | None:
        """The saved index, or None if there is none yet."""
        import faiss

        path = folder / FILE_NAME
        if not path.exists():
            return None
        index = faiss.read_index(str(path))
        if index.d != dim:
            raise Conflict(f"{path} holds vectors of dimension {index.d}, the manifest says {dim}")
        return cls(dim, index)
