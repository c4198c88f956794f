"""One ingestion batch: files hashed, loaded, split, embedded in pooled batches, committed one by one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kbqa.config import IngestConfig
from kbqa.errors import BadInput, KbqaError, ModelError
from kbqa.ingest.files import sha256_file
from kbqa.ingest.progress import IngestCancelled, IngestProgress, check_cancel
from kbqa.store.chunks import ChunkStore, DocumentRow
from kbqa.store.indexes import Indexes
from kbqa.types import Chunk, FileDuplicate, FileFailure, IngestReport

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder
    from kbqa.ingest.writer import KbWriter

# Chunks of small files are pooled up to this many embedding batches before they are embedded.
POOL_BATCHES = 4


@dataclass
class FileJob:
    """A file that needs (re-)ingesting, with its chunks once split."""

    path: Path
    sha256: str
    size: int
    mtime: float
    existing: DocumentRow | None
    chunks: list[Chunk]


class Batch:
    """One ingestion run: groups small files so the embedder sees full batches.

    Chunks of small files are pooled until ``batch_size`` is reached, embedded in one call, then
    each file is committed in a transaction of its own. A file with more chunks than fit in
    memory comfortably is streamed: embedded and inserted batch by batch inside its transaction.
    """

    def __init__(
        self,
        writer: KbWriter,
        embedder: Embedder,
        config: IngestConfig,
        report: IngestReport,
        progress: IngestProgress,
    ) -> None:
        self.writer = writer
        self.store: ChunkStore = writer.store
        self.indexes: Indexes = writer.indexes
        self.embedder = embedder
        self.config: IngestConfig = config
        self.report: IngestReport = report
        self.progress: IngestProgress = progress
        self.batch_size = max(1, embedder.batch_size)
        self.stream_above = self.batch_size * 8
        self.pending: list[FileJob] = []
        self.changed = False
        self.last_checkpoint = time.monotonic()
        self.shas: dict[str, str] = {}  # content seen in this run -> its source (duplicates)

    def visit(self, path: Path) -> None:
        from kbqa.ingest.loaders import load
        from kbqa.ingest.split import split_documents

        source = str(path)
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            # A name in another encoding (GBK from an old share, say) arrives surrogate-escaped;
            # SQLite cannot store it, so it fails alone instead of aborting the whole batch.
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            self._failed(
                shown,
                f"{shown}: the file name is not valid UTF-8, so it cannot be recorded; rename "
                "the file (e.g. convmv -f gbk -t utf-8 --notest FILE)",
            )
            return
        try:
            stat = path.stat()
            sha = sha256_file(path)
        except OSError as e:
            self._failed(source, f"{path}: cannot be read ({e.strerror}); check permissions")
            return
        existing = self.store.document(source)
        if existing and existing.sha256 == sha and existing.status == "ok":
            if (existing.size, existing.mtime) != (stat.st_size, stat.st_mtime):
                self.store.touch_document(existing.id, stat.st_size, stat.st_mtime)
            self.report.files_unchanged += 1
            self.progress.file_done(source, "unchanged")
            return
        if existing is None and self._duplicate(source, sha):
            return
        job = FileJob(path, sha, stat.st_size, stat.st_mtime, existing, [])
        try:
            chunks = split_documents(load(path, self.config.load), self.config.split)
            for chunk in chunks:
                job.chunks.append(chunk)
                if len(job.chunks) > self.stream_above:
                    self.flush()
                    self._stream(job, chunks)
                    return
            if not job.chunks:
                raise BadInput(f"{path}: no text found in the file; nothing to index")
        except (ModelError, IngestCancelled):
            raise
        except Exception as e:  # noqa: BLE001 - any loader failure is recorded, the batch goes on
            self._record_failure(job, e)
            return
        self.pending.append(job)
        # Several batches' worth pooled: sorted by length they pad less, and no 32 + 1 split.
        if sum(len(j.chunks) for j in self.pending) >= self.batch_size * POOL_BATCHES:
            self.flush()

    def _duplicate(self, source: str, sha: str) -> bool:
        """A new file whose content the KB already holds under another path that still exists
        (the same file given to the CLI and uploaded over REST) is reported, not indexed twice."""
        first = self.shas.setdefault(sha, source)  # twins in one run: not committed yet
        twin = self.store.document_by_sha(sha)
        same_as = twin.source if twin is not None and Path(twin.source).is_file() else first
        if same_as == source:
            return False  # a moved file is indexed under its new path
        self.report.files_duplicate.append(FileDuplicate(source, same_as))
        self.progress.file_done(source, "duplicate")
        return True

    def flush(self) -> None:
        """Embed the pooled chunks in one call, then commit each file on its own."""
        if not self.pending:
            return
        jobs, self.pending = self.pending, []
        check_cancel(self.progress, self.report)
        texts = [c.index_text for j in jobs for c in j.chunks]
        vectors = self._embed(texts)
        at = 0
        for job in jobs:
            n = len(job.chunks)
            self._commit(job, [(job.chunks, vectors[at : at + n])])
            at += n

    def _stream(self, job: FileJob, rest: Iterator[Chunk]) -> None:
        """Ingest a large file batch by batch inside one transaction."""

        def batches() -> Iterator[tuple[list[Chunk], np.ndarray]]:
            buf = job.chunks
            for chunk in rest:
                buf.append(chunk)
                if len(buf) >= self.batch_size:
                    check_cancel(self.progress, self.report)
                    yield buf, self._embed([c.index_text for c in buf])
                    buf = []
            if buf:
                yield buf, self._embed([c.index_text for c in buf])

        self._commit(job, batches())

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedder.embed_passages(texts)
        precision = self.embedder.precision
        if precision not in self.writer.manifest.embedding_precisions:
            self.writer.manifest.embedding_precisions.append(precision)  # saved at the checkpoint
        self.progress.chunks_done(len(texts))
        return vectors

    def _commit(self, job: FileJob, batches) -> None:
        source = str(job.path)
        added: list[np.ndarray] = []
        store = self.store
        store.begin()
        try:
            doc_id = store.upsert_document(
                source, sha256=job.sha256, size=job.size, mtime=job.mtime,
                loader=job.path.suffix.lower().lstrip("."), status="ok", error=None,
            )  # fmt: skip
            removed = store.delete_chunks(doc_id) if job.existing else np.zeros(0, np.int64)
            count = 0
            for chunks, vectors in batches:
                ids = store.add_chunks(doc_id, count, chunks, vectors)
                self.indexes.add(ids, vectors, [c.index_text for c in chunks])
                added.append(ids)
                count += len(chunks)
            store.upsert_document(
                source, sha256=job.sha256, size=job.size, mtime=job.mtime,
                loader=job.path.suffix.lower().lstrip("."), status="ok", error=None, chunks=count,
            )  # fmt: skip
            store.commit()
        except BaseException as e:
            store.rollback()
            if added:
                self.indexes.remove(np.concatenate(added))
            if isinstance(e, (ModelError, IngestCancelled)) or not isinstance(e, Exception):
                raise
            self._record_failure(job, e)
            return
        # Only now, with the new version durable, do the old vectors leave the live index.
        self.indexes.remove(removed)
        self.changed = True
        self.report.chunks_added += count
        self.report.chunks_removed += len(removed)
        if job.existing:
            self.report.files_updated += 1
        else:
            self.report.files_added += 1
        self.progress.file_done(source, "updated" if job.existing else "added")
        if time.monotonic() - self.last_checkpoint > self.config.checkpoint_seconds:
            self.writer.checkpoint()  # readers catch up on what was committed so far
            self.last_checkpoint = time.monotonic()

    def _record_failure(self, job: FileJob, error: Exception) -> None:
        message = str(error) if isinstance(error, KbqaError) else f"{job.path}: {_describe(error)}"
        existing = job.existing
        if existing is not None and existing.chunks:
            message += " (the previously ingested version is kept)"
        self.store.begin()
        self.store.upsert_document(
            str(job.path),
            # Keep the stored version's hash while its chunks stay, so a later run retries.
            sha256=existing.sha256 if existing is not None else None,
            size=job.size, mtime=job.mtime, loader=job.path.suffix.lower().lstrip("."),
            status="failed", error=message,
        )  # fmt: skip
        self.store.commit()
        self.changed = True
        self._failed(str(job.path), message)

    def _failed(self, source: str, message: str) -> None:
        self.report.files_failed.append(FileFailure(path=source, error=message))
        self.progress.file_done(source, "failed")


def _describe(error: Exception) -> str:
    text = str(error).strip() or "no details"
    return f"{type(error).__name__}: {text}"
