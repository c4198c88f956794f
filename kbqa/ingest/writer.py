"""KbWriter: the one writer of a KB folder, under its lock, on indexes of its own."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kbqa.config import IngestConfig
from kbqa.ingest.batch import Batch
from kbqa.ingest.files import collect_files
from kbqa.ingest.progress import IngestCancelled, IngestProgress, NoProgress, check_cancel
from kbqa.store.indexes import Indexes
from kbqa.store.lock import remove_temp_files, writer_lock
from kbqa.store.manifest import Manifest, index_versions
from kbqa.types import FileFailure, IngestReport

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder
    from kbqa.kb import KnowledgeBase


@dataclass
class BatchPlan:
    """The files of a batch, found and checked before the writer lock is taken."""

    files: list[Path]
    report: IngestReport
    progress: IngestProgress
    started: float


def plan(
    kb: KnowledgeBase,
    paths: Sequence[Path],
    embedder: Embedder,
    config: IngestConfig,
    progress: IngestProgress | None = None,
) -> BatchPlan:
    """Collect the files and check the model and chunking: bad input never waits for the lock,
    and a job cancelled while it waited for it stops here."""
    started = time.monotonic()
    progress = progress or NoProgress()
    report = IngestReport(kb=kb.name)
    broken: list[tuple[str, str]] = []
    files = collect_files(
        paths, config.include, config.exclude, skip_under=kb.folder.parent, broken=broken
    )
    report.files_seen = len(files) + len(broken)
    report.files_failed.extend(FileFailure(path=p, error=e) for p, e in broken)
    kb.check_embedder(embedder)
    kb.check_split(config.split)
    progress.start(len(files))
    check_cancel(progress, report)
    return BatchPlan(files, report, progress, started)


class KbWriter:
    """Ingests and removes under the KB's lock; made by ``KnowledgeBase.writer()``.

    Its indexes and manifest are its own: readers of the same KnowledgeBase keep what was last
    published, and a checkpoint publishes (files saved first, then the reader's view moves on),
    so a reader never holds an index the writer is half-way through changing.
    """

    def __init__(self, kb: KnowledgeBase, indexes: Indexes, manifest: Manifest) -> None:
        self.kb = kb
        self.store = kb.store
        self.folder = kb.folder
        self.indexes = indexes
        self.manifest = manifest

    @classmethod
    @contextmanager
    def open(cls, kb: KnowledgeBase) -> Iterator[KbWriter]:
        """Hold the KB's writer lock; repair indexes a crashed writer left behind."""
        with writer_lock(kb.folder):
            remove_temp_files(kb.folder)
            manifest = Manifest.load(kb.folder)
            # repair: under the lock a remote store may be synced with SQLite (no one else writes).
            indexes, rebuilt = Indexes.open(kb.folder, kb.store, manifest, repair=True)
            writer = cls(kb, indexes, manifest)
            if rebuilt:
                writer.checkpoint()
            yield writer

    def checkpoint(self, embedder: Embedder | None = None, final: bool = False) -> None:
        """Save the indexes, then the manifest, then publish them to the KB's readers.

        ``final``: the writer is done with its indexes, so readers take them as they are; a
        checkpoint mid-batch only tells readers to load what was just saved (the writer goes on
        changing its own copy). ``embedder``: fit the refusal threshold too (end of a batch).
        """
        # Indexes first, manifest last: the manifest's generation is the commit point, so a
        # crash in between is seen as stale indexes and repaired, never trusted.
        self.indexes.save(self.folder)
        m = self.manifest
        m.dense_index = self.indexes.dense.kind
        m.generation = self.store.generation()
        m.counts = self.store.counts()
        m.versions = index_versions()  # what built the indexes just saved
        if embedder is not None:
            # The refusal threshold is fitted here, by the one writer, under its lock: readers
            # only read it (kbqa.retrieval.refusal.threshold_for). It searches the KB as its
            # readers will, so the indexes are published to the KB object first.
            from kbqa.retrieval.refusal import EXTRA_KEY, fit_at_checkpoint

            self.kb._publish(self.indexes, m.generation, copy.deepcopy(m))
            m.extra[EXTRA_KEY] = fit_at_checkpoint(self.kb, embedder)
        m.save(self.folder)
        self.kb._publish(self.indexes if final else None, m.generation, copy.deepcopy(m))

    def ingest(
        self,
        paths: Sequence[Path],
        embedder: Embedder,
        config: IngestConfig,
        progress: IngestProgress | None = None,
    ) -> IngestReport:
        """Ingest files and folders: unchanged files are skipped by sha256, changed ones replaced.

        Each file is committed in its own transaction, so a crash loses at most the file in
        flight; a failing file is recorded with its error and the batch goes on.
        """
        return self.run(plan(self.kb, paths, embedder, config, progress), embedder, config)

    def run(self, planned: BatchPlan, embedder: Embedder, config: IngestConfig) -> IngestReport:
        """Ingest the files of a plan made (and checked) by ``plan``."""
        report, progress = planned.report, planned.progress
        batch = Batch(self, embedder, config, report, progress)
        try:
            for path in planned.files:
                check_cancel(progress, report)
                batch.visit(path)
            batch.flush()
        except IngestCancelled:
            if batch.changed:  # what was committed is checkpointed, as at the end
                self.checkpoint(final=True)
            raise
        if batch.changed:
            self.checkpoint(embedder, final=True)
        report.seconds = time.monotonic() - planned.started
        return report

    def remove(self, source: str) -> tuple[str, int]:
        """Remove one document (by source path, or a unique suffix of it); returns (source, chunks)."""
        doc = self.kb.find_document(source)
        self.store.begin()
        removed = self.store.delete_document(doc.id)
        self.store.commit()
        self.indexes.remove(removed)
        self.checkpoint(final=True)
        return doc.source, len(removed)
