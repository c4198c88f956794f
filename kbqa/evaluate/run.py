"""Run a KB over evaluation rows: answers and the gold document's rank; latency on a sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kbqa.errors import BadInput, NotFound
from kbqa.evaluate.metrics import (
    MRR_K,
    QaRow,
    RowResult,
    SquadSet,
    char_f1,
    contains_answer,
    write_documents,
)  # fmt: skip

if TYPE_CHECKING:
    from kbqa.config import AskConfig
    from kbqa.embed.base import Embedder
    from kbqa.ingest.progress import IngestProgress
    from kbqa.kb import KnowledgeBase
    from kbqa.llm.base import Generator
    from kbqa.prompt import Prompts
    from kbqa.types import IngestReport


def ingest_squad(
    kb: KnowledgeBase,
    squad: SquadSet,
    folder: Path,
    embedder: Embedder,
    progress: IngestProgress | None = None,
) -> IngestReport:
    """Write the paragraphs as files in ``folder`` and ingest them with the normal pipeline.

    ``folder`` must lie outside the KB home (ingestion never walks into it); a fixed folder per
    data set keeps sources stable, so a second run only hashes the files.
    """
    from kbqa.config import IngestConfig

    write_documents(squad, folder)
    split = kb.split_config()
    return kb.ingest([folder], embedder, IngestConfig(split=split), progress)


def gold_doc_ids(kb: KnowledgeBase, rows: Sequence[QaRow]) -> dict[str, int]:
    """Each row source's document id, by KnowledgeBase.find_document's rule."""
    ids: dict[str, int] = {}
    for row in rows:
        if row.source and row.source not in ids:
            try:
                ids[row.source] = kb.find_document(row.source).id
            except (NotFound, BadInput) as e:
                raise type(e)(f"question at line {row.line} ({row.question[:30]!r}): {e}") from e
    return ids


class QueryVectors:
    """An Embedder serving precomputed query vectors (``replay``) or embedding for real.

    Questions are embedded once in batches (much faster than one by one), which serves the
    quality numbers; latency comes from the questions run with ``replay`` off, which embed
    each question alone, as a user's request does.
    """

    def __init__(self, inner: Embedder, vectors: dict[str, np.ndarray] | None = None) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.batch_size = inner.batch_size
        self.vectors = vectors if vectors is not None else {}
        self.replay = True

    @property
    def precision(self) -> str:
        return self.inner.precision

    def load(self) -> QueryVectors:
        self.inner.load()
        return self

    def fill(self, questions: Sequence[str], batch: int = 64) -> QueryVectors:
        todo = list(dict.fromkeys(q for q in questions if q not in self.vectors))
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            self.vectors.update(zip(part, self.inner.embed_queries(part), strict=True))
        return self

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_passages(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self.replay and all(t in self.vectors for t in texts):
            return np.stack([self.vectors[t] for t in texts])
        return self.inner.embed_queries(texts)


def run_eval(
    kb: KnowledgeBase,
    embedder: Embedder,
    rows: Sequence[QaRow],
    *,
    generator: Generator | None = None,
    prompts: Prompts | None = None,
    config: AskConfig | None = None,
    top_k: int | None = None,
    timed: int | None = None,
    queries: QueryVectors | None = None,
    on_row: Callable[[], None] | None = None,
) -> list[RowResult]:
    """Ask every question and rank its gold document among the first MRR_K hits.

    The first ``timed`` questions (all when None) are asked with their own query embedding and
    timed; the rest reuse batch-embedded vectors and carry no timings.
    """
    from kbqa.ask import Asker
    from kbqa.prompt import load_prompts
    from kbqa.retrieval.retriever import Retriever

    gold = gold_doc_ids(kb, rows)
    queries = (queries or QueryVectors(embedder)).fill([r.question for r in rows])
    asker = Asker(kb, queries, generator, prompts or load_prompts(), config)
    asker.threshold()  # a first-use calibration is a one-off cost, not a question's latency
    retriever = Retriever(kb, queries, asker.config.retrieve)
    limit = len(rows) if timed is None else timed
    results = []
    for i, row in enumerate(rows):
        result = RowResult(row.question, row.answers, row.source)
        queries.replay = i >= limit
        answer = asker.ask(row.question, top_k)
        queries.replay = True
        text = "" if answer.refused else answer.answer
        result.answer, result.refused, result.mode = answer.answer, answer.refused, answer.mode
        result.exact, result.f1 = contains_answer(text, row.answers), char_f1(text, row.answers)
        if i < limit:
            result.timings = dict(answer.timings)
        if row.source and row.answers:
            hits = retriever.search(row.question, MRR_K)
            want = gold[row.source]
            result.rank = next((n for n, h in enumerate(hits, 1) if h.doc_id == want), None)
        results.append(result)
        if on_row:
            on_row()
    return results
