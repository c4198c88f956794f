"""manifest.json: what a KB was built with, and the generation its derived indexes reflect."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput
from kbqa.store.atomic import atomic_write_json

FILE_NAME = "manifest.json"
FORMAT_VERSION = 1
VECTOR_STORES = ("faiss", "milvus")
# The libraries whose version changes the lexical index's tokens: kbqa (stopwords, rules),
# jieba (its dictionary and cutting: an upgrade changes BM25 tokens) and OpenCC (the
# Traditional -> Simplified folding before jieba, kbqa.script). faiss is recorded too, for
# the record only: it reads the files older versions wrote, and vectors do not change.
LEXICAL_SHAPERS = ("kbqa", "jieba", "opencc")
_DISTRIBUTIONS = {"jieba": "jieba", "opencc": "opencc-python-reimplemented"}


@functools.cache
def index_versions() -> dict[str, str]:
    """The versions of what shapes the indexes, as recorded in the manifest at checkpoints."""
    from importlib.metadata import PackageNotFoundError, version

    import faiss

    import kbqa

    found = {"kbqa": kbqa.__version__, "faiss": str(faiss.__version__)}
    for name, dist in _DISTRIBUTIONS.items():
        try:
            found[name] = version(dist)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def lexical_drift(manifest: Manifest) -> list[str]:
    """What changed since the lexical index was built, as ``"jieba 0.42.0 -> 0.42.1"``.

    Empty when nothing did, or when the manifest predates recorded versions (trusted, as
    before; the next checkpoint records them).

    >>> old = {**index_versions(), "jieba": "0.0.1"}
    >>> m = Manifest("demo", "default", "m", 4, 100, 10, versions=old)
    >>> lexical_drift(m) == [f"jieba 0.0.1 -> {index_versions()['jieba']}"]
    True
    """
    if not manifest.versions:
        return []
    now = index_versions()
    return [
        f"{name} {manifest.versions.get(name, 'unrecorded')} -> {now[name]}"
        for name in LEXICAL_SHAPERS
        if manifest.versions.get(name) != now[name]
    ]


def check_vector_store(kind: str, kb: str) -> str:
    """The vector store kind, if this kbqa knows it.

    >>> check_vector_store("milvus", "demo")
    'milvus'
    """
    if kind not in VECTOR_STORES:
        raise BadInput(
            f"knowledge base {kb!r} uses vector store {kind!r}, which this kbqa does not know "
            f"(known: {', '.join(VECTOR_STORES)}): upgrade kbqa, or re-ingest into a new KB with "
            "--store faiss or --store milvus"
        )
    return kind


@dataclass
class Manifest:
    name: str
    embedding_spec: str  # how to load the model ("default" or a directory)
    embedding_model_id: str  # what the vectors mean; a KB is never searched with another
    dim: int
    chunk_size: int
    chunk_overlap: int
    normalized: bool = True  # vectors are L2-normalised, so inner product is cosine
    metric: str = "inner_product"
    vector_store: str = "faiss"  # one of VECTOR_STORES, fixed when the KB is created
    milvus_uri: str | None = None  # server URL or milvus-lite file, for vector_store "milvus"
    milvus_collection: str | None = None
    dense_index: str = "flat"
    # Every precision its vectors were embedded in (fp32, bf16, ...); empty: before issue 14,
    # fp32. Any of them may be searched with any other: see kbqa/embed/precision.py.
    embedding_precisions: list[str] = field(default_factory=list)
    format: int = FORMAT_VERSION
    generation: int = 0  # chunks.sqlite generation that dense.faiss and the lexical index hold
    counts: dict[str, int] = field(default_factory=dict)
    # index_versions() when the indexes were last written; empty: a KB from before issue 17.
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def save(self, folder: Path) -> None:
        self.updated_at = time.time()
        atomic_write_json(folder / FILE_NAME, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BadInput(f"{path} cannot be read ({e}); the KB folder is damaged") from e
        if data.get("format") != FORMAT_VERSION:
            raise BadInput(
                f"{path} has format {data.get('format')!r}; this kbqa reads format "
                f"{FORMAT_VERSION}: re-ingest the documents into a new KB"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
