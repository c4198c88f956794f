"""Test doubles that satisfy kbqa's protocols without weights."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class HashEmbedder:
    """Embeds text as hashed character uni- and bigrams: texts sharing characters score high.

    Deterministic and instant, so retrieval tests can assert rankings without a model.
    """

    batch_size = 32
    precision = "fp32"

    def __init__(self, dim: int = 256, model_id: str = "test/hash-embedder") -> None:
        self.dim = dim
        self.model_id = model_id
        self.calls = 0
        self.loads = 0

    def load(self) -> HashEmbedder:
        self.loads += 1  # no weights: counted, as FakeGenerator counts its loads
        return self

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
        for g in grams:
            if g.isspace():
                continue
            h = int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if len(g) == 1 else 2.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return (
            np.stack([self._one(t) for t in texts])
            if texts
            else np.zeros((0, self.dim), np.float32)
        )

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_passages(texts)


class FakeGenerator:
    """The Generator protocol's lifecycle for test doubles: ``load()``/``close()`` are counted.

    Subclasses give ``stream`` (and may override the rest); answers need no weights.
    """

    name = "fake-llm"
    context_window = 4096

    def __init__(self) -> None:
        self.loads = 0
        self.closes = 0

    def load(self) -> FakeGenerator:
        self.loads += 1
        return self

    def close(self) -> None:
        self.closes += 1

    def count_tokens(self, text: str) -> int:
        return len(text)

    def stream(self, prompt, history=(), config=None):
        yield from ()

    def generate(self, prompt, history=(), config=None) -> str:
        return "".join(self.stream(prompt, history, config))
