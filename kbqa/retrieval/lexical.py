"""BM25 over jieba tokens: an incremental inverted index persisted beside dense.faiss (no pickle)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbqa.script import to_simplified
from kbqa.store.atomic import atomic_write
from kbqa.text import query_tokens, tokenize

FILE_NAME = "lexical.npz"
FORMAT = 2  # 2: Traditional folded to Simplified before jieba


_HAN = re.compile(r"[\u4e00-\u9fff]{2}")


@dataclass(frozen=True)
class _Stats:
    """The index's per-change numbers (``LexicalIndex._current``)."""

    alive: int  # live chunks
    norm: np.ndarray  # BM25's length normalisation of every row
    df: dict[int, int]  # term id -> live chunks holding it, filled as queries ask


class LexicalIndex:
    """BM25 (Lucene idf, k1, b) over chunk ids; adds and removals are incremental.

    Postings live in a term-major CSR (``indptr``/``rows``/``tfs``) plus a small tail of recent
    adds; removed rows are masked at once and dropped when the tail is merged (at save, or on
    search when the tail grows). Rows are positions in ``ids``, the chunk ids.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        self.ids = np.zeros(0, np.int64)
        self.lengths = np.zeros(0, np.int32)
        self.alive = np.zeros(0, bool)
        self.indptr = np.zeros(1, np.int64)
        self.rows = np.zeros(0, np.int32)
        self.tfs = np.zeros(0, np.float32)
        self._row_of: dict[int, int] | None = None
        self._tail: list[tuple[int, np.ndarray, np.ndarray]] = []  # (row, term ids, tfs)
        self._tail_postings = 0
        self._stats: _Stats | None = None

    def __len__(self) -> int:
        return self._current().alive

    def _current(self) -> _Stats:
        """What every query needs and only a change alters, computed once per change.

        At 100k chunks, counting the live rows, BM25's length norms and a common term's
        document frequency cost ~10-200 us each, and one retrieval asks for them ~20 times
        (search, coverage, unknown terms). A change drops the whole object (``_changed``), so
        a search that raced it fills a dictionary no later search reads.
        """
        stats = self._stats
        if stats is None:
            alive = int(self.alive.sum())
            avgdl = max(float(self.lengths[self.alive].mean()), 1.0) if alive else 1.0
            norm = self.k1 * (1 - self.b + self.b * self.lengths / avgdl)
            stats = self._stats = _Stats(alive, norm, {})
        return stats

    def _changed(self) -> None:
        self._stats = None

    # -- changes ------------------------------------------------------------------------------

    def add(self, ids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        self.add_tokens(ids, [tokenize(t) for t in texts])

    def add_tokens(self, ids: Sequence[int] | np.ndarray, tokens: Sequence[list[str]]) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.remove(ids)  # re-adding an id replaces it
        start = len(self.ids)
        lengths = np.zeros(len(ids), np.int32)
        for i, toks in enumerate(tokens):
            counts = Counter(toks)
            terms = np.fromiter((self._term(t) for t in counts), np.int32, len(counts))
            tfs = np.fromiter(counts.values(), np.float32, len(counts))
            self._tail.append((start + i, terms, tfs))
            self._tail_postings += len(counts)
            lengths[i] = len(toks)
        self.ids = np.concatenate([self.ids, ids])
        self.lengths = np.concatenate([self.lengths, lengths])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), bool)])
        self._changed()
        if self._row_of is not None:
            self._row_of.update((int(c), start + i) for i, c in enumerate(ids))

    def remove(self, ids: Iterable[int]) -> None:
        row_of = self._rows()
        for cid in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).tolist():
            row = row_of.pop(int(cid), None)
            if row is not None:
                self.alive[row] = False
                self._changed()

    def _term(self, token: str) -> int:
        tid = self.vocab.get(token)
        if tid is None:
            tid = self.vocab[token] = len(self.vocab)
        return tid

    def _rows(self) -> dict[int, int]:
        if self._row_of is None:
            live = np.flatnonzero(self.alive)
            self._row_of = dict(zip(self.ids[live].tolist(), live.tolist(), strict=True))
        return self._row_of

    def compact(self) -> None:
        """Merge the tail into the CSR and drop removed rows (renumbering the survivors)."""
        if not self._tail and self.alive.all():
            return
        vocab_n = len(self.vocab)
        term_of = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int32), np.diff(self.indptr))
        terms = [term_of] + [t for _, t, _ in self._tail]
        rows = [self.rows] + [np.full(len(t), r, np.int32) for r, t, _ in self._tail]
        tfs = [self.tfs] + [f for _, _, f in self._tail]
        terms, rows, tfs = np.concatenate(terms), np.concatenate(rows), np.concatenate(tfs)
        keep = self.alive[rows]
        new_row = np.cumsum(self.alive, dtype=np.int64) - 1
        terms, rows, tfs = terms[keep], new_row[rows[keep]].astype(np.int32), tfs[keep]
        order = np.argsort(terms, kind="stable")
        self.rows, self.tfs = rows[order], tfs[order]
        self.indptr = np.zeros(vocab_n + 1, np.int64)
        np.cumsum(np.bincount(terms, minlength=vocab_n), out=self.indptr[1:])
        self.ids, self.lengths = self.ids[self.alive], self.lengths[self.alive]
        self.alive = np.ones(len(self.ids), bool)
        self._tail, self._tail_postings, self._row_of = [], 0, None
        self._changed()

    # -- search -------------------------------------------------------------------------------

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, BM25 scores), best first, at most ``k``, only chunks sharing a token."""
        tokens = list(query_tokens(query))
        return self.search_tokens(tokens + self.recovered(query, tokens), k)

    def recovered(self, query: str, tokens: list[str]) -> list[str]:
        """Words of the KB that jieba cut apart in the query: 入职报到 -> 入/职报/到 loses 入职 and
        报到, which the KB's text holds; the two characters across a cut next to a word the KB
        never saw are searched as well.

        Only cuts beside an unknown word count: where the query's words are all known, its
        tokens are the KB's and nothing is added.
        """
        from kbqa.text import load_jieba

        words = [w for w in load_jieba().lcut(to_simplified(query).lower()) if w.strip()]
        have = set(tokens)
        out = []
        for a, b in zip(words, words[1:], strict=False):
            if a in self.vocab and b in self.vocab:
                continue
            pair = a[-1] + b[0]
            if _HAN.fullmatch(pair) and pair in self.vocab and pair not in have:
                out.append(pair)
                have.add(pair)
        return out

    def search_tokens(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._tail_postings > max(50_000, len(self.rows) // 10):
            self.compact()  # a long tail makes every query scan it
        stats = self._current()
        terms = [self.vocab[t] for t in dict.fromkeys(tokens) if t in self.vocab]
        if not terms or stats.alive == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        norm = stats.norm
        scores = np.zeros(len(self.ids), np.float32)
        for tid in terms:
            rows, tfs = self._postings(tid)
            df = self._df(tid, rows)
            if df == 0:
                continue
            idf = np.log(1.0 + (stats.alive - df + 0.5) / (df + 0.5))
            # rows are unique per term, so plain fancy-index addition is exact
            scores[rows] += idf * tfs * (self.k1 + 1) / (tfs + norm[rows])
        scores[~self.alive] = 0.0
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        hits = hits[np.argsort(-scores[hits], kind="stable")]
        return self.ids[hits], scores[hits]

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        if tid + 1 < len(self.indptr):
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            rows, tfs = self.rows[lo:hi], self.tfs[lo:hi]
        else:
            rows, tfs = np.zeros(0, np.int32), np.zeros(0, np.float32)
        extra = [(r, f[t == tid][0]) for r, t, f in self._tail if tid in t]
        if extra:
            rows = np.concatenate([rows, np.asarray([r for r, _ in extra], np.int32)])
            tfs = np.concatenate([tfs, np.asarray([f for _, f in extra], np.float32)])
        return rows, tfs

    def _df(self, tid: int, rows: np.ndarray | None = None) -> int:
        """How many live chunks hold term ``tid`` (``rows``: its postings, when at hand)."""
        counts = self._current().df
        df = counts.get(tid)
        if df is None:
            if rows is None:
                rows = self._postings(tid)[0]
            df = counts[tid] = int(self.alive[rows].sum())
        return df

    def idf(self, token: str) -> float:
        """Inverse document frequency of a token; unseen tokens get the largest value."""
        n = len(self)
        tid = self.vocab.get(token)
        df = 0 if tid is None else self._df(tid)
        return float(np.log(1.0 + (n - df + 0.5) / (df + 0.5)))

    def known(self, token: str) -> bool:
        """Whether any chunk ever indexed holds ``token`` (removed ones count until compaction)."""
        return token in self.vocab

    def mostly_han(self) -> bool:
        """Whether the KB's vocabulary is mostly Chinese (cached per vocabulary size)."""
        from kbqa.retrieval.signals import mostly_han

        if getattr(self, "_han", (None, -1))[1] != len(self.vocab):
            self._han = (mostly_han(self.vocab), len(self.vocab))
        return self._han[0]

    def coverage(self, query: str, texts: Sequence[str]) -> float:
        """The best share of the query's IDF weight whose tokens occur in one of ``texts`` (0-1).

        A question about the KB shares its rare words with the passage that answers it; an
        off-topic one shares at most common words, whatever its embedding says.
        """
        from kbqa.retrieval.signals import is_question_word

        # 几天 / 多少钱 ask for the fact; the passage that answers says 5天, not 几天.
        weights = {t: self.idf(t) for t in set(query_tokens(query)) if not is_question_word(t)}
        total = sum(weights.values())
        if total <= 0:
            return 0.0
        best = 0.0
        for text in texts:
            text = to_simplified(text).lower()
            best = max(best, sum(w for t, w in weights.items() if t in text) / total)
        return best

    # -- persistence --------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        self.compact()
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        meta = json.dumps({"format": FORMAT, "k1": self.k1, "b": self.b, "vocab": terms})

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                # Plain arrays and a JSON string: np.load never needs allow_pickle.
                np.savez(
                    f, meta=np.frombuffer(meta.encode("utf-8"), np.uint8), ids=self.ids,
                    lengths=self.lengths, indptr=self.indptr, rows=self.rows, tfs=self.tfs,
                )  # fmt: skip

        atomic_write(folder / FILE_NAME, write)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        path = folder / FILE_NAME
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            if meta.get("format") != FORMAT:
                return None  # an older layout: the caller rebuilds from the chunk store
            index = cls(k1=meta["k1"], b=meta["b"])
            index.vocab = {t: i for i, t in enumerate(meta["vocab"])}
            index.ids, index.lengths = z["ids"], z["lengths"]
            index.indptr, index.rows, index.tfs = z["indptr"], z["rows"], z["tfs"]
        index.alive = np.ones(len(index.ids), bool)
        return index

    def catch_up(self, store_ids: np.ndarray, texts_for) -> int:
        """Make the index hold exactly ``store_ids``: drop others, tokenize only missing ones.

        Chunk ids are never reused, so an id-set difference is exact; ``texts_for(ids)`` yields
        (ids, texts) batches. Returns how many chunks were added or removed.
        """
        have = self.ids[self.alive]
        gone = np.setdiff1d(have, store_ids, assume_unique=True)
        missing = np.setdiff1d(store_ids, have, assume_unique=True)
        self.remove(gone)
        if len(missing):
            for ids, texts in texts_for(missing):
                self.add(ids, texts)
        return len(gone) + len(missing)
