"""Hybrid retrieval: dense (FAISS) + lexical (BM25) fused by reciprocal rank, overlaps merged."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kbqa.config import RetrieveConfig
from kbqa.embed.base import query_job
from kbqa.errors import BadInput
from kbqa.retrieval.bridge import Bridged, search_words
from kbqa.types import Hit

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder
    from kbqa.kb import KnowledgeBase
    from kbqa.retrieval.lexical import LexicalIndex
    from kbqa.store.base import VectorStore


COVERAGE_WEIGHT = 0.1
# Weights of the refusal signals, fitted on the fit and report splits of benchmarks/data/devcorp
# (never on report2 or report3); docs/benchmarks.md has the method and the rates.
UNKNOWN_WEIGHT = 0.05  # x share of the question's rare words the KB never mentions
TYPE_PENALTY = 0.03  # a 多少/几点/哪里 question whose passages hold no number/time/place
UNIT_PENALTY = 0.1  # a 几天/多少钱/人数 question whose passages hold no number in that unit
KIND_PENALTY = 0.04  # a kind of a known thing named by a word the KB lacks (高温补贴)
PLACE_PENALTY = 0.1  # an office (杭州总部) no first hit names, or the best is another's rule
FOREIGN_SHIFT = 0.1  # cross-lingual cosines run lower: an English question on a Chinese KB
# x a foreign question's share of words the dictionary translates into nothing the KB holds
# (gym -> 健身房); half UNKNOWN_WEIGHT, as the dictionary misses some of the KB's own words
# (trip -> 旅行 on a KB that says 出差). Fitted on the English questions of fit..report3 and 16
# English unanswerable ones (kind english_unanswerable in benchmarks/data).
FOREIGN_UNKNOWN_WEIGHT = 0.025
# From this many chunks on, the query is embedded beside the lexical search (Retriever.retrieve).
OVERLAP_MIN_CHUNKS = 50_000
RELEVANCE_POOL = 8  # relevance reads this many fused hits whatever top_k is (calibration too)
SIGNAL_HITS = 3  # coverage, unknown terms and answer type look at the first hits only


@dataclass
class Retrieval:
    """Fused hits (best first) plus what refusal and FAQ matching need, and stage timings."""

    hits: list[Hit]
    query_vector: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    coverage: float = 0.0  # share of the query's IDF weight found in one of the first hits
    unknown: float = 0.0  # share of its rare words the KB never mentions
    type_ok: bool = True  # the first hits hold what the question word asks for
    unit_ok: bool = True  # ... and a number in the unit it names (几天: N天)
    foreign: bool = False  # no word of the question is in the KB (another language)
    bridged: str = ""  # a foreign question's words in the KB's language (kbqa.retrieval.bridge)
    unknown_kind: bool = False  # 高温补贴 on a KB with other 补贴 only (signals.unknown_kind)
    place_ok: bool = True  # the first hits answer for the office asked about (place_named)
    pool_cosine: float | None = None  # best cosine of the RELEVANCE_POOL first hits

    @property
    def best_cosine(self) -> float:
        """The highest dense cosine of the relevance pool (-1 when there are no hits)."""
        if self.pool_cosine is not None:
            return self.pool_cosine
        return max((h.score for h in self.hits), default=-1.0)

    @property
    def relevance(self) -> float:
        """What refusal thresholds: best cosine, lifted by coverage, lowered by missing facts.

        On CMRC, e5-small gives real and off-topic questions nearly the same cosines (their
        10th/90th percentiles overlap), while coverage separates them; 0.1 was the weight that
        met both refusal goals there. Near-domain questions (公司有健身房吗 on an HR corpus)
        share the topic and cosine of answerable ones: what gives them away is a rare word the
        KB never mentions, or a 多少/几点 question whose passages hold no number or time.
        """
        if self.foreign:
            # Not lifted by the coverage of ``bridged``: those words are the KB's by choice
            # (kbqa.retrieval.bridge keeps only translations it holds), so they always cover.
            return self.best_cosine + FOREIGN_SHIFT - FOREIGN_UNKNOWN_WEIGHT * self.unknown
        return (
            self.best_cosine
            + COVERAGE_WEIGHT * self.coverage
            - UNKNOWN_WEIGHT * self.unknown
            - (0.0 if self.type_ok else TYPE_PENALTY)
            - (0.0 if self.unit_ok else UNIT_PENALTY)
            - (KIND_PENALTY if self.unknown_kind else 0.0)
            - (0.0 if self.place_ok else PLACE_PENALTY)
        )

    def signals(self) -> dict[str, float | bool]:
        """The parts of ``relevance``, for ``--debug``."""
        return {
            "best_cosine": round(self.best_cosine, 4),
            "coverage": round(self.coverage, 4),
            "unknown_terms": round(self.unknown, 4),
            "answer_type_found": self.type_ok,
            "answer_unit_found": self.unit_ok,
            "unknown_kind": self.unknown_kind,
            "place_found": self.place_ok,
            "cross_lingual": self.foreign,
            **({"searched_as": self.bridged} if self.foreign else {}),
            "relevance": round(self.relevance, 4),
        }


def rrf(rankings: list[tuple[np.ndarray, float]], k: float) -> dict[int, float]:
    """Reciprocal-rank fusion: each ranking adds ``weight / (k + rank)`` (rank from 1).

    >>> rrf([(np.array([7, 8]), 1.0), (np.array([8]), 1.0)], 60.0)[8] > 2 / 62
    True
    """
    fused: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, cid in enumerate(ids.tolist(), start=1):
            fused[cid] = fused.get(cid, 0.0) + weight / (k + rank)
    return fused


# How deep into the fused order hits are scored and merged, as a multiple of the pool (+ a few):
# merge_adjacent folds overlapping neighbours into one hit, so ranking only ``pool`` ids could
# leave fewer than ``pool`` hits after merging; twice the pool, plus one spare at each end of a
# merged run, keeps enough. Deeper costs a SQLite read per lexical-only id (its cosine).
FUSED_DEPTH_FACTOR = 2
FUSED_DEPTH_EXTRA = 2


@dataclass(frozen=True)
class DenseRanking:
    """The dense search's ids, best first, with their cosines to the query."""

    ids: np.ndarray
    cosines: np.ndarray


class Retriever:
    """Searches one KB with the model it was built with.

    ``Hit.score`` is the dense cosine similarity of the chunk to the query (in [-1, 1], higher
    is better, comparable to the refusal threshold) even for chunks only the lexical ranker
    found; the order of the hits is the fused order, so scores need not decrease down the list.
    """

    def __init__(
        self, kb: KnowledgeBase, embedder: Embedder, config: RetrieveConfig | None = None
    ) -> None:
        kb.check_embedder(embedder)
        self.kb = kb
        self.embedder = embedder
        self.config = config or RetrieveConfig()

    def search(self, query: str, top_k: int | None = None) -> list[Hit]:
        """The ``top_k`` best chunks for ``query``, fused, best first (score: dense cosine)."""
        return self.retrieve(query, top_k).hits

    def retrieve(
        self, query: str, top_k: int | None = None, query_vector: np.ndarray | None = None
    ) -> Retrieval:
        """Fused hits with timings; ``query_vector`` skips embedding (batched callers).

        embed -> dense and lexical rankings -> fuse -> rescore (every hit gets its cosine) ->
        merge overlapping neighbours -> coverage and the other relevance signals.
        """
        with self.kb.store.pinned():  # one generation read (see ChunkStore.pinned)
            return self._retrieve(query, top_k, query_vector)

    def _retrieve(
        self, query: str, top_k: int | None, query_vector: np.ndarray | None
    ) -> Retrieval:
        k = self._check(query, top_k)
        timings: dict[str, float] = {}
        indexes = self.kb.indexes
        # On a large KB the lexical search and the question's jieba cuts (Python) run in a
        # thread while this one embeds the query (onnxruntime, off the interpreter lock) and
        # scans the dense index: the thread's wake-up falls inside the embedding, so the
        # critical path is embed + dense + fuse. On a small KB they cost less than the
        # hand-off, which also spends ~1 ms of CPU a request under load (docs/benchmarks.md,
        # issue 14). Overlapped stage timings add up to more than the total.
        overlap = query_vector is None and len(indexes.lexical) >= OVERLAP_MIN_CHUNKS
        embed = self._embed_job(query, query_vector, timings)  # tokenized before the hand-off
        lexical = self._lexical_job(indexes.lexical, query, k, timings, overlap)
        qv = embed()
        t0 = time.perf_counter()
        dense = self._dense(indexes.dense, qv, k)
        t1 = time.perf_counter()
        timings["dense_ms"] = _ms(t1 - t0)
        lexical_ids, searched = lexical.result()
        t2 = time.perf_counter()
        order = self._fuse(dense, lexical_ids, max(k, RELEVANCE_POOL))
        scores = self._rescore(order, dense, qv, indexes.dense)
        hits = self._merge(self.kb.store.hits(order, scores))
        timings["fuse_ms"] = _ms(time.perf_counter() - t2)
        found = Retrieval(hits[:k], qv[0], timings, foreign=searched.foreign)
        if searched.foreign:
            found.bridged, found.unknown = searched.words, searched.unknown
        if hits:
            t3 = time.perf_counter()
            _coverage(found, searched.words, hits[:RELEVANCE_POOL], indexes.lexical)
            timings["signals_ms"] = _ms(time.perf_counter() - t3)
        return found

    def _check(self, query: str, top_k: int | None) -> int:
        """``top_k`` or the configured default; BadInput for an empty query or k below 1."""
        if not query or not query.strip():
            raise BadInput("the query is empty: give a question or keywords")
        k = self.config.top_k if top_k is None else top_k
        if k < 1:
            raise BadInput(f"top_k must be at least 1, got {k}")
        return k

    def _embed_job(
        self, query: str, query_vector: np.ndarray | None, timings: dict[str, float]
    ) -> Callable[[], np.ndarray]:
        """The query as one (1, dim) row, when called: ``query_vector`` if given, else
        embedded (kbqa.embed.base.query_job: what needs the interpreter lock done now)."""
        if query_vector is not None:
            timings["embed_ms"] = 0.0
            return lambda: np.asarray(query_vector, np.float32).reshape(1, -1)
        start = time.perf_counter()
        job = query_job(self.embedder, query)

        def run() -> np.ndarray:
            qv = job()
            timings["embed_ms"] = _ms(time.perf_counter() - start)
            return qv

        return run

    def _lexical_job(
        self, lexical: LexicalIndex, query: str, k: int, timings: dict[str, float], overlap: bool
    ) -> Future[tuple[np.ndarray, Bridged]]:
        """The lexical ranking's ids, whether the question is foreign and the words searched
        (``kbqa.retrieval.bridge.search_words``): made now, or (``overlap``) in ``_side_pool`` together with the question's
        jieba cuts the signals will want."""

        def run() -> tuple[np.ndarray, Bridged]:
            start = time.perf_counter()
            searched = search_words(query, lexical)
            ids, _ = lexical.search(searched.words, max(self.config.candidates, k))
            if overlap and not searched.foreign:  # a foreign question's signals need no cuts
                cut_question(query)
            timings["lexical_ms"] = _ms(time.perf_counter() - start)
            return ids, searched

        if overlap:
            return _side_pool().submit(run)
        done: Future[tuple[np.ndarray, Bridged]] = Future()
        done.set_result(run())
        return done

    def _dense(self, dense: VectorStore, qv: np.ndarray, k: int) -> DenseRanking:
        scores, ids = dense.search(qv, max(self.config.candidates, k), self.config.hnsw_ef_search)
        keep = ids[0] >= 0  # FAISS pads a short result with -1
        return DenseRanking(ids[0][keep], scores[0][keep])

    def _fuse(self, dense: DenseRanking, lexical_ids: np.ndarray, pool: int) -> list[int]:
        """The ids of both rankings in fused order, as deep as merging needs (FUSED_DEPTH_*)."""
        fused = rrf(
            [(dense.ids, self.config.dense_weight), (lexical_ids, self.config.lexical_weight)],
            self.config.rrf_k,
        )
        depth = pool * FUSED_DEPTH_FACTOR + FUSED_DEPTH_EXTRA
        return sorted(fused, key=fused.__getitem__, reverse=True)[:depth]

    def _rescore(
        self, order: list[int], dense: DenseRanking, qv: np.ndarray, store: VectorStore
    ) -> list[float]:
        """The dense cosine of each id, also of those only the lexical ranking found."""
        cosine = dict(zip(dense.ids.tolist(), dense.cosines.tolist(), strict=True))
        missing = [c for c in order if c not in cosine]
        if missing:
            # The index's own copies where it holds them (as precise as the dense ranking's
            # cosines; 0.4 ms less than SQLite's at 100k chunks), else SQLite, the source of
            # truth (Milvus, or an id the index does not hold).
            vecs = store.vectors_of(missing)
            if vecs is None:
                vecs = self.kb.store.vectors_of(missing, qv.shape[1])
            cosine.update(zip(missing, (vecs @ qv[0]).astype(float).tolist(), strict=True))
        return [cosine[c] for c in order]

    def _merge(self, hits: list[Hit]) -> list[Hit]:
        return merge_adjacent(hits) if self.config.merge_overlaps else hits


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _side_pool() -> ThreadPoolExecutor:
    """Threads for the lexical side of large retrievals, one per core, made at first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="kbqa-lexical")
        return _pool


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it makes its own pool."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def cut_question(query: str) -> None:
    """jieba's part-of-speech cuts of the question, made while its embedding runs (they
    are kept, kbqa.text.tagged): the two the signals ask for, topic words and unknown kinds."""
    from kbqa.script import to_simplified
    from kbqa.text import tagged

    simplified = to_simplified(query)
    tagged(simplified)
    tagged(simplified.lower())


def _coverage(found: Retrieval, query: str, pool: list[Hit], lexical: LexicalIndex) -> None:
    """Coverage and the other signals ``Retrieval.relevance`` weighs, from the first fused hits
    (``query``: what BM25 searched, ``kbqa.retrieval.bridge.search_words``)."""
    from kbqa.retrieval.signals import (
        answer_type,
        asked_places,
        has_type,
        has_unit,
        place_named,
        unknown_kind,
        unknown_share,
        wanted_unit,
    )

    first = [h.text for h in pool[:SIGNAL_HITS]]
    found.pool_cosine = max(h.score for h in pool)
    found.coverage = lexical.coverage(query, first)
    if found.foreign:
        return  # the other signals read the question's own words and type
    found.unknown = unknown_share(query, lexical.known, lexical.idf, first)
    kind = answer_type(query)
    found.type_ok = any(has_type(kind, t) for t in first)
    unit = wanted_unit(query)
    found.unit_ok = any(has_unit(unit, t) for t in first)
    found.unknown_kind = unknown_kind(query, lexical.known, first)
    found.place_ok = place_named(asked_places(query), first)


def merge_adjacent(hits: list[Hit]) -> list[Hit]:
    """Overlapping neighbours of one document (consecutive ids sharing text) become one hit.

    The merged hit takes the better rank and score; ``metadata["chunk_ids"]`` lists its parts.
    """
    out: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(out):
            ids = kept.metadata.get("chunk_ids", [kept.chunk_id])
            if kept.doc_id == hit.doc_id and (
                hit.chunk_id == max(ids) + 1 or hit.chunk_id == min(ids) - 1
            ):
                before = hit.chunk_id < min(ids)
                text = _join(hit.text, kept.text) if before else _join(kept.text, hit.text)
                if text is None:
                    continue  # neighbours without shared text (a new section): two hits
                meta = dict(kept.metadata, chunk_ids=sorted([*ids, hit.chunk_id]))
                out[i] = Hit(
                    kept.chunk_id, kept.doc_id, kept.source, text, max(kept.score, hit.score), meta
                )
                break
        else:
            out.append(hit)
    return out


def _join(first: str, second: str, min_shared: int = 5) -> str | None:
    """``first`` then ``second`` without the text they share (the splitter's overlap), or None.

    >>> _join("甲乙丙丁戊己", "丁戊己庚辛", 3)
    '甲乙丙丁戊己庚辛'
    """
    for size in range(min(len(first), len(second)), min_shared - 1, -1):
        if first.endswith(second[:size]):
            return first + second[size:]
    return None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
