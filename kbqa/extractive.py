"""Extractive answers (no LLM): the sentences of the top hits that best answer the question."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from kbqa.lexical import tokenize
from kbqa.types import Hit

_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]?")
_TRIM = "，,、：: \t*"
_QUESTION_LINE = re.compile(r"^\s*(?:问|问题|Q)\s*[:：].*$|^\s*(?:答|回答|A)\s*[:：]", re.M | re.I)


def sentences(text: str) -> list[str]:
    """Sentences of a text, each keeping its end mark.

    >>> sentences("年假5天。病假另计！\\n见附表")
    ['年假5天。', '病假另计！', '见附表']
    """
    return [s.strip(_TRIM) for s in _SENTENCE.findall(text) if len(s.strip(_TRIM)) >= 2]


def answer_text(hit: Hit) -> str:
    """What a hit says: a Q/A row's answer (its question would only echo the user's)."""
    answer = hit.metadata.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer
    return _QUESTION_LINE.sub("", hit.text)


def extract(
    question: str,
    hits: Sequence[Hit],
    idf: Callable[[str], float] | None = None,
    max_sentences: int = 3,
    max_chars: int = 200,
) -> str:
    """A short answer built from the best sentences, each followed by its source marker [n].

    A sentence scores the idf mass of the question's tokens it contains (plus character
    overlap, which catches what jieba splits differently), with a small bonus for higher-ranked
    hits. Sentences within half the best score are kept, best first, up to the limits.
    """
    q_tokens = set(tokenize(question))
    weight = {t: (idf(t) if idf else 1.0) for t in q_tokens}
    total = sum(weight.values()) or 1.0
    q_chars = {c for c in question if c.isalnum()}
    scored: list[tuple[float, int, int, str]] = []
    for n, hit in enumerate(hits, start=1):
        for pos, sent in enumerate(sentences(answer_text(hit))):
            s_tokens = set(tokenize(sent))
            lexical = sum(weight[t] for t in q_tokens & s_tokens) / total
            chars = len(q_chars & set(sent)) / (len(q_chars) or 1)
            score = lexical + 0.3 * chars + 0.1 / n
            scored.append((score, n, pos, sent))
    if not scored:
        return ""
    scored.sort(key=lambda s: -s[0])
    best = scored[0][0]
    picked, used = [], 0
    for score, n, _, sent in scored:
        if len(picked) >= max_sentences or score < 0.5 * best:
            break
        room = max_chars - used
        if room < 8:
            break
        text = sent if len(sent) <= room else sent[: room - 1] + "…"
        if any(text in p or p in text for p, _ in picked):
            continue  # the same sentence from an overlapping chunk
        picked.append((text, n))
        used += len(text)
    return "".join(f"{text}[{n}]" for text, n in picked)
