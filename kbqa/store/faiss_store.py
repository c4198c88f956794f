"""FAISS vector store: IndexIDMap2 over inner product on L2-normalised vectors (= cosine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbqa.config import RetrieveConfig
from kbqa.errors import Conflict
from kbqa.store.atomic import atomic_write

FILE_NAME = "dense.faiss"
TOMBSTONES = "dense.removed.npy"
# Above this many vectors a checkpoint turns the flat index into IVF (flat search costs ~7 ms
# per 100k vectors, memory-bound); measured in benchmarks/bench_retrieval.py and bench_hnsw.py.
LARGE_THRESHOLD = 200_000
# The large index: IVF over 8-bit codes (a quarter of the bytes to scan), its best
# IVF_REFINE x k re-ranked on full vectors, so scores stay cosines (to fp16 precision). At 1M
# CMRC-like vectors it kept recall@10 0.962 against flat at p50 3.7 ms and built in 94 s on 2
# cores, where HNSW never reached 0.95 on that near-tie set (docs/benchmarks.md, third round).
IVF_NPROBE = 256
IVF_REFINE = 4
IVF_LISTS_PER_SQRT = 4  # nlist = 4 sqrt(n); rebuilt (retrained) once n has quadrupled
IVF_TRAIN_PER_LIST = 40  # training sample: faiss wants >= 39 points per centroid
# HNSW: what KBs saved before IVF hold, searched (and compacted into IVF) as before.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = RetrieveConfig.hnsw_ef_search  # one default; why it is 256: see there
# HNSW and IVF-with-refine cannot delete in place: removed ids are tombstones filtered at
# search (with over-fetch) until they pass this share, when a checkpoint rebuilds the index.
COMPACT_SHARE = 0.1


class FaissStore:
    """Inner-product index addressed by chunk id (flat, or IVF when large); scores are cosine."""

    def __init__(self, dim: int, index=None, removed: np.ndarray | None = None) -> None:
        self.dim = dim
        self._index = index if index is not None else new_index(dim)
        self._removed: set[int] = set() if removed is None else set(removed.tolist())
        self._kind = _kind_of(self._index)

    @property
    def kind(self) -> str:
        """``flat``, ``ivf`` or ``hnsw``: known when the index is made or replaced, not per call."""
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
        if self.kind == "ivf":
            params = faiss.IndexRefineSearchParameters(
                k_factor=IVF_REFINE, base_index_params=faiss.SearchParametersIVF(nprobe=IVF_NPROBE)
            )
        else:
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

    def vectors_of(self, ids: list[int]) -> np.ndarray | None:
        """The index's copies (fp16 in a flat index) of these ids' vectors; None if one is not
        held (removed, or added to SQLite after this index was loaded)."""
        if not ids or self._removed.intersection(ids):
            return None
        try:
            return self._index.reconstruct_batch(np.asarray(ids, np.int64))
        except RuntimeError:  # faiss: an id it does not hold
            return None

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every live entry, read back from the index itself."""
        ids = faiss_ids(self._index.id_map, self._index.ntotal)
        inner = self._index.index
        vecs = inner.reconstruct_n(0, inner.ntotal) if len(ids) else np.zeros((0, self.dim))
        keep = ~np.isin(ids, np.fromiter(self._removed, np.int64)) if self._removed else None
        if keep is not None:
            ids, vecs = ids[keep], vecs[keep]
        return ids, np.asarray(vecs, np.float32)

    def optimise(self, large_threshold: int = LARGE_THRESHOLD) -> None:
        """Switch to IVF past the threshold, retrain it as it grows, compact tombstones.

        Called at checkpoints. A saved HNSW index (KBs from before IVF) becomes IVF here, and
        a saved fp32 flat one fp16.
        """
        import faiss

        big = len(self) >= large_threshold
        if self.kind == "flat" and not big:
            if isinstance(faiss.downcast_index(self._index.index), faiss.IndexFlat):
                self._rebuild("flat")  # saved before flat went fp16: half the bytes per query
            return
        fresh = self.kind == "ivf" and _lists(self._index) * 2 > _wanted_lists(len(self))
        if fresh and len(self._removed) <= COMPACT_SHARE * self._index.ntotal:
            return
        self._rebuild("ivf" if big else "flat")

    def _rebuild(self, kind: str) -> None:
        ids, vecs = self.vectors()
        rebuilt = new_index(self.dim, kind, vecs)
        if len(ids):
            rebuilt.add_with_ids(vecs, ids)
        self._index, self._removed = rebuilt, set()
        self._kind = _kind_of(rebuilt)

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


def new_index(dim: int, kind: str = "flat", train: np.ndarray | None = None):
    """An empty IndexIDMap2 over a flat, IVF (trained on ``train``) or HNSW inner-product index."""
    import faiss

    if kind == "flat":
        # Exhaustive, over fp16 copies of the vectors: a flat scan is bound by memory bandwidth
        # (100k x 384 fp32 is 154 MB read per query), and half the bytes took half the time
        # (~5 vs ~10 ms at 100k, docs/benchmarks.md) for cosines within a few 1e-4 of fp32. SQLite
        # keeps the fp32 vectors; KBs saved with an fp32 IndexFlatIP are read as they are.
        return faiss.IndexIDMap2(
            faiss.IndexScalarQuantizer(
                dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        )
    if kind == "ivf":
        if train is None or not len(train):
            raise ValueError("an IVF index needs vectors to train on")
        lists = _wanted_lists(len(train))
        sample = train[
            np.random.default_rng(0).permutation(len(train))[: lists * IVF_TRAIN_PER_LIST]
        ]
        ivf = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim), dim, lists, faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )  # fmt: skip
        ivf.cp.min_points_per_centroid = 1  # a small KB past a low test threshold: no warning
        ivf.train(np.ascontiguousarray(sample, np.float32))
        refine = faiss.IndexRefineFlat(ivf)
        refine.k_factor = IVF_REFINE
        index = faiss.IndexIDMap2(refine)
        index.referenced_objects = [refine, ivf]  # the Python owners of what the map wraps
        return index
    inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    inner.hnsw.efSearch = HNSW_EF_SEARCH
    return faiss.IndexIDMap2(inner)


def _wanted_lists(n: int) -> int:
    """IVF lists for ``n`` vectors: 4 sqrt(n), and never more than there are vectors."""
    return max(1, min(n, int(IVF_LISTS_PER_SQRT * np.sqrt(n))))


def _lists(index) -> int:
    import faiss

    return int(faiss.extract_index_ivf(index).nlist)


def _kind_of(index) -> str:
    """``ivf``, ``hnsw`` or ``flat``: what the IndexIDMap2 wraps."""
    import faiss

    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexRefine):
        return "ivf"
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
