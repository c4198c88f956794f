"""FAISS vector store: IndexIDMap2 over inner product on L2-normalised vectors (= cosine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbqa.config import RetrieveConfig
from kbqa.errors import Conflict
from kbqa.store.atomic import atomic_write

FILE_NAME = "dense.faiss"
TOMBSTONES = "dense.removed.npy"
# Above this many vectors a checkpoint turns the flat index into HNSW; measured in
# benchmarks/bench_retrieval.py (docs/benchmarks.md).
HNSW_THRESHOLD = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = RetrieveConfig.hnsw_ef_search  # one default; why it is 256: see there
# HNSW cannot delete: removed ids are tombstones filtered at search (with over-fetch) until
# they pass this share of the index, when a checkpoint rebuilds it from its own vectors.
COMPACT_SHARE = 0.1


class FaissStore:
    """Inner-product index addressed by chunk id (flat, or HNSW when large); scores are cosine."""

    def __init__(self, dim: int, index=None, removed: np.ndarray | None = None) -> None:
        import faiss

        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._removed: set[int] = set() if removed is None else set(removed.tolist())
        self._kind = _kind_of(self._index)

    @property
    def kind(self) -> str:
        """``flat`` or ``hnsw``: known when the index is made or replaced, not per call."""
        return self._kind

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._removed)

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
        if not len(ids):
            return
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "flat":
            self._index.remove_ids(ids)
        else:
            id_map = self._index.id_map
            present = set(faiss_ids(id_map, self._index.ntotal).tolist())
            self._removed.update(i for i in ids.tolist() if i in present)

    def search(
        self, queries: np.ndarray, k: int, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self))) if len(self) else k
        if len(self) == 0:
            n = len(queries)
            return np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
        import faiss

        if self.kind == "flat":
            if len(queries) > 1:
                return self._index.search(queries, k)
            # One query gains nothing from OpenMP but pays its barrier: measured 165 ms with two
            # threads against 2 ms with one at 10k vectors on a busy 2-core machine.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self._index.search(queries, k)
            finally:
                faiss.omp_set_num_threads(threads)

        fetch = min(k + len(self._removed), int(self._index.ntotal))
        params = faiss.SearchParametersHNSW(efSearch=max(ef_search or HNSW_EF_SEARCH, fetch))
        scores, ids = self._index.search(queries, fetch, params=params)
        if self._removed:
            dead = np.isin(ids, np.fromiter(self._removed, np.int64))
            scores, ids = _drop(scores, ids, dead, k)
        return scores[:, :k], ids[:, :k]

    def catch_up(self, wanted: np.ndarray, fetch) -> int:
        """Drop entries not in ``wanted`` and add the missing ones, ``fetch(ids) -> (ids, vecs)``.

        Keeps the index's kind (a saved HNSW stays HNSW) and costs only the difference, where
        rebuilding a flat index from SQLite took 1.4-2.2 s at 266k chunks. Exact because chunk
        ids are never reused. Returns how many entries changed.
        """
        present = faiss_ids(self._index.id_map, self._index.ntotal)
        # Tombstones saved by another checkpoint than the index's: keep those it holds.
        self._removed &= set(present.tolist())
        dead = np.fromiter(self._removed, np.int64, len(self._removed))
        live = present[~np.isin(present, dead)] if len(dead) else present
        gone = live[~np.isin(live, wanted)]
        self.remove(gone)
        new = wanted[~np.isin(wanted, present)]
        if len(new):
            ids, vecs = fetch(new)
            self.add(ids, vecs)
        return len(gone) + len(new)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live entry, read back from the index itself."""
        ids = faiss_ids(self._index.id_map, self._index.ntotal)
        inner = self._index.index
        vecs = inner.reconstruct_n(0, inner.ntotal) if len(ids) else np.zeros((0, self.dim))
        keep = ~np.isin(ids, np.fromiter(self._removed, np.int64)) if self._removed else None
        if keep is not None:
            ids, vecs = ids[keep], vecs[keep]
        return ids, np.asarray(vecs, np.float32)

    def optimise(self, hnsw_threshold: int = HNSW_THRESHOLD) -> None:
        """Switch to HNSW past the threshold and compact tombstones; called at checkpoints."""
        big = len(self) >= hnsw_threshold
        if self.kind == "flat" and not big:
            return
        if self.kind == "hnsw" and len(self._removed) <= COMPACT_SHARE * self._index.ntotal:
            return
        ids, vecs = self.vectors()
        fresh = new_index(self.dim, "hnsw" if big or self.kind == "hnsw" else "flat")
        if len(ids):
            fresh.add_with_ids(vecs, ids)
        self._index, self._removed = fresh, set()
        self._kind = _kind_of(fresh)

    def save(self, folder: Path) -> None:
        import faiss

        removed = np.fromiter(sorted(self._removed), np.int64)

        def write_removed(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.save(f, removed)

        # Both files land before the manifest's generation moves, so a crash between them is
        # seen as stale indexes and rebuilt from SQLite, never trusted as a pair.
        if len(removed) or (folder / TOMBSTONES).exists():
            atomic_write(folder / TOMBSTONES, write_removed)
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
        tomb = folder / TOMBSTONES
        removed = np.load(tomb, allow_pickle=False) if tomb.is_file() else None
        return cls(dim, index, removed)


def new_index(dim: int, kind: str = "flat"):
    """An empty IndexIDMap2 over a flat or HNSW inner-product index."""
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    inner.hnsw.efSearch = HNSW_EF_SEARCH
    return faiss.IndexIDMap2(inner)


def _kind_of(index) -> str:
    """``hnsw`` when the IndexIDMap2 wraps an HNSW index, else ``flat``."""
    import faiss

    inner = faiss.downcast_index(index.index)
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"


def faiss_ids(id_map, n: int) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(id_map).astype(np.int64)[:n] if n else np.zeros(0, np.int64)


def _drop(scores: np.ndarray, ids: np.ndarray, dead: np.ndarray, k: int):
    """Per row, the first ``k`` entries that are not ``dead``, padded with -1 ids."""
    out_s = np.zeros((len(ids), k), np.float32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        keep = ~dead[r] & (ids[r] >= 0)
        s, i = scores[r][keep][:k], ids[r][keep][:k]
        out_s[r, : len(s)], out_i[r, : len(i)] = s, i
    return out_s, out_i
