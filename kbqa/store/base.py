"""The VectorStore protocol: what the KB needs from a dense index (FAISS here, Milvus at scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorStore(Protocol):
    """An id-addressed set of L2-normalised vectors searched by inner product (= cosine).

    Ids are the chunk ids of the chunk store. ``save`` must be atomic: a crash leaves the
    previous file in place.
    """

    dim: int

    @property
    def kind(self) -> str:
        """The index structure (``flat``, ``ivf``, ``hnsw``, ``autoindex``), recorded in the manifest."""
        ...

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each shaped (n_queries, k); missing slots have id -1.

        ``ef_search`` is the HNSW breadth for stores that have one; ``None``: their default.
        """
        ...

    def vectors_of(self, ids: list[int]) -> np.ndarray | None:
        """The vectors of these ids as the index holds them, (len(ids), dim), or None when
        it does not hold them all (or keeps none it can read back): read SQLite then."""
        ...

    def optimise(self) -> None:
        """Reshape the index for its size (called at checkpoints, before ``save``)."""
        ...

    def save(self, folder: Path) -> None: ...
