"""Stored FAQ questions are embedded once, not at every answer that meets their row."""

from __future__ import annotations

import numpy as np
from fakes import HashEmbedder

from kbqa.retrieval.faq import _StoredQuestions


class Counting(HashEmbedder):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.asked: list[list[str]] = []

    def embed_queries(self, texts):
        self.asked.append(list(texts))
        return super().embed_queries(texts)


def test_stored_questions_embed_once_per_model_and_text_and_stay_bounded() -> None:
    kept, emb = _StoredQuestions(size=3), Counting()
    first = kept.vectors(emb, ["报销多久能到账？", "年假有几天？"])
    again = kept.vectors(emb, ["年假有几天？", "报销多久能到账？"])
    assert emb.asked == [["报销多久能到账？", "年假有几天？"]]
    np.testing.assert_allclose(again, first[::-1])
    np.testing.assert_allclose(
        first, HashEmbedder().embed_queries(["报销多久能到账？", "年假有几天？"])
    )
    kept.vectors(emb, ["年假有几天？", "婚假有几天？", "婚假有几天？"])
    assert emb.asked[-1] == ["婚假有几天？"]  # only the new text, once
    other = Counting(model_id="other/model")
    kept.vectors(other, ["年假有几天？"])
    assert other.asked == [["年假有几天？"]], "another model's vectors are its own"
    kept.vectors(emb, ["报销多久能到账？"])  # evicted: the cache holds 3
    assert emb.asked[-1] == ["报销多久能到账？"]
