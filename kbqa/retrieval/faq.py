"""FAQ first: stored Q/A pairs among the hits matched against the question."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kbqa.text import QA_PAIR
from kbqa.types import Hit

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder

_NOISE = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class FaqMatch:
    question: str
    answer: str
    hit: Hit
    similarity: float


def qa_pairs(hit: Hit) -> list[tuple[str, str]]:
    """The Q/A pairs a hit holds: a Q/A row's metadata, or 问：/答： (Q:/A:) pairs in its text.

    >>> qa_pairs(Hit(1, 1, "f.txt", "问：年假几天？\\n答：5天。", 0.0))
    [('年假几天？', '5天。')]
    """
    q, a = hit.metadata.get("question"), hit.metadata.get("answer")
    if isinstance(q, str) and isinstance(a, str) and q.strip() and a.strip():
        return [(q.strip(), a.strip())]
    return [(m["q"].strip(), m["a"].strip()) for m in QA_PAIR.finditer(hit.text) if m["a"].strip()]


def overlap(a: str, b: str) -> float:
    """Dice coefficient of character bigrams, ignoring punctuation and case.

    >>> overlap("年假有几天？", "年假有几天")
    1.0
    """
    a, b = _NOISE.sub("", a.lower()), _NOISE.sub("", b.lower())
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    ga = {a[i : i + 2] for i in range(len(a) - 1)} or {a}
    gb = {b[i : i + 2] for i in range(len(b) - 1)} or {b}
    return 2 * len(ga & gb) / (len(ga) + len(gb))


def term_overlap(a: str, b: str, idf: Callable[[str], float]) -> float:
    """IDF-weighted Dice of the two questions' jieba tokens (0 to 1).

    Catches paraphrases that share the rare words in other characters around them:
    报销需要多久到账 / 报销多久能到账 share 报销, 多久, 到账 (bigram Dice only 0.46).
    """
    from kbqa.text import tokenize

    ta, tb = set(tokenize(a)), set(tokenize(b))
    total = sum(idf(t) for t in ta) + sum(idf(t) for t in tb)
    return 2 * sum(idf(t) for t in ta & tb) / total if total > 0 else 0.0


def best_match(
    question: str,
    query_vector: np.ndarray,
    hits: list[Hit],
    embedder: Embedder,
    idf: Callable[[str], float] | None = None,
) -> FaqMatch | None:
    """The stored question most like ``question``: mean of word overlap and embedding cosine.

    Both halves must agree for a high score: a paraphrase scores high on cosine and fair on
    overlap, a different question on the same topic (婚假 vs 年假) fair on cosine, low on
    overlap. Overlap is the better of character-bigram Dice and IDF-weighted term Dice.
    """
    pairs = [(q, a, h) for h in hits for q, a in qa_pairs(h)]
    if not pairs:
        return None
    vecs = _STORED.vectors(embedder, [q for q, _, _ in pairs])
    cos = vecs @ np.asarray(query_vector, np.float32)

    def words(q: str) -> float:
        dice = overlap(question, q)
        return max(dice, term_overlap(question, q, idf)) if idf is not None else dice

    scored = [
        FaqMatch(q, a, h, round(0.5 * words(q) + 0.5 * float(c), 4))
        for (q, a, h), c in zip(pairs, cos, strict=True)
    ]
    return max(scored, key=lambda m: m.similarity)


class _StoredQuestions:
    """The vectors of stored FAQ questions, kept: the same rows come back for every question
    on their topic, and embedding 2-4 of them took ~10 ms of each FAQ answer (one ONNX run
    each). Keyed by model and text, so a KB's other model or an edited row embeds anew."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(self, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
        model = str(getattr(embedder, "model_id", id(embedder)))
        with self._lock:
            kept = {t: self._kept.get((model, t)) for t in texts}
        new = list(dict.fromkeys(t for t, v in kept.items() if v is None))
        if new:
            for text, vec in zip(new, embedder.embed_queries(new), strict=True):
                kept[text] = vec
            with self._lock:
                for text in new:
                    self._kept[(model, text)] = kept[text]
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return np.stack([kept[t] for t in texts]).astype(np.float32)


_STORED = _StoredQuestions()
