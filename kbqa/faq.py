"""FAQ first: stored Q/A pairs among the hits matched against the question."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kbqa.types import Hit

if TYPE_CHECKING:
    from kbqa.embed import Embedder

# 问：…答：… or Q: … A: … pairs written in running text (one pair per match).
_PAIR = re.compile(
    r"(?:^|\n)\s*(?:问|问题|Q)\s*[:：]\s*(?P<q>.+?)\s*\n?\s*(?:答|回答|答案|A)\s*[:：]\s*"
    r"(?P<a>.+?)(?=\n\s*(?:问|问题|Q)\s*[:：]|\Z)",
    re.S | re.I,
)
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
    return [(m["q"].strip(), m["a"].strip()) for m in _PAIR.finditer(hit.text) if m["a"].strip()]


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


def best_match(
    question: str, query_vector: np.ndarray, hits: list[Hit], embedder: Embedder
) -> FaqMatch | None:
    """The stored question most like ``question``: mean of bigram Dice and embedding cosine.

    Both halves must agree for a high score: a paraphrase scores high on cosine and fair on
    Dice, a different question on the same topic (婚假 vs 年假) fair on cosine, low on Dice.
    """
    pairs = [(q, a, h) for h in hits for q, a in qa_pairs(h)]
    if not pairs:
        return None
    vecs = embedder.embed_queries([q for q, _, _ in pairs])
    cos = vecs @ np.asarray(query_vector, np.float32)
    scored = [
        FaqMatch(q, a, h, round(0.5 * overlap(question, q) + 0.5 * float(c), 4))
        for (q, a, h), c in zip(pairs, cos, strict=True)
    ]
    return max(scored, key=lambda m: m.similarity)
