"""The VectorStore protocol: what the KB needs from a dense index (FAISS here, Milvus at scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class VectorStore(Protocol):
    """An id-addressed set of L2-normalised vectors searched by inner product (= cosine).

    Ids are the chunk ids of the chunk store. ``save`` must be atomic: a crash leaves the
    previous file in place.
    """

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each shaped (n_queries, k); missing slots have id -1."""
        ...

    def save(self, folder: Path) -> None: ...
