"""KnowledgeBase: open, ingest, remove, delete and search one KB folder; the only KB writer."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from kbqa.config import IngestConfig, SplitConfig
from kbqa.errors import BadInput, Conflict, KbqaError, ModelError, NotFound
from kbqa.files import collect_files, sha256_file
from kbqa.store.chunks import ChunkStore, DocumentRow
from kbqa.store.dense import creation_settings, drop_dense
from kbqa.store.indexes import Indexes
from kbqa.store.manifest import FILE_NAME as MANIFEST
from kbqa.store.manifest import Manifest, index_versions
from kbqa.types import Chunk, FileDuplicate, FileFailure, Hit, IngestReport

if TYPE_CHECKING:
    from kbqa.embed import Embedder

_NAME = re.compile(r"[^\W_][\w.-]{0,63}")
LOCK_FILE = ".lock"
# Chunks of small files are pooled up to this many embedding batches before they are embedded.
POOL_BATCHES = 4


def validate_name(name: str) -> str:
    """A KB name is one folder name: letters, digits, '_', '-', '.', no path tricks.

    >>> validate_name("hr-policies")
    'hr-policies'
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise BadInput(
            f"KB name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (no '/', '\\' or '..')"
        )
    return name


def list_kbs(home: Path) -> list[str]:
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if (p / MANIFEST).is_file())


class IngestProgress(Protocol):
    """What a front end shows while a batch runs (a progress bar, a job record).

    A front end that can stop a batch also has ``cancelled() -> bool``, asked between files
    and between embedding batches (kbqa.api.jobs does; the CLI is stopped with Ctrl-C).
    """

    def start(self, total_files: int) -> None: ...

    def file_done(self, path: str, status: str) -> None: ...

    def chunks_done(self, n: int) -> None: ...


class _NoProgress:
    def start(self, total_files: int) -> None:
        pass

    def file_done(self, path: str, status: str) -> None:
        pass

    def chunks_done(self, n: int) -> None:
        pass


@dataclass
class _FileJob:
    """A file that needs (re-)ingesting, with its chunks once split."""

    path: Path
    sha256: str
    size: int
    mtime: float
    existing: DocumentRow | None
    chunks: list[Chunk]


class KnowledgeBase:
    """One KB folder: ``manifest.json``, ``chunks.sqlite`` (source of truth), derived indexes."""

    def __init__(self, folder: Path, manifest: Manifest, store: ChunkStore, writable: bool) -> None:
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self.writable = writable
        self._indexes: Indexes | None = None
        self._loaded_generation = -1

    @property
    def name(self) -> str:
        return self.manifest.name

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, home: Path, name: str) -> KnowledgeBase:
        """Open an existing KB for reading (and for writes, which take the lock themselves)."""
        folder = home / validate_name(name)
        if not (folder / MANIFEST).is_file():
            known = ", ".join(list_kbs(home)) or "none yet"
            raise NotFound(
                f"knowledge base {name!r} does not exist in {home} (known: {known}); "
                f"create it with: kbqa ingest PATH --kb {name}"
            )
        return cls(folder, Manifest.load(folder), ChunkStore(folder), writable=True)

    @classmethod
    def open_or_create(
        cls,
        home: Path,
        name: str,
        embedder: Embedder,
        embedding_spec: str,
        split: SplitConfig,
        vector_store: str = "faiss",
        milvus_uri: str | None = None,
    ) -> KnowledgeBase:
        """Open a KB, or create it with these settings (the vector store is fixed at creation)."""
        folder = home / validate_name(name)
        if (folder / MANIFEST).is_file():
            return cls.open(home, name)
        remote = creation_settings(name, vector_store, milvus_uri)
        folder.mkdir(parents=True, exist_ok=True)
        with _lock(folder):
            if not (folder / MANIFEST).is_file():
                manifest = Manifest(
                    name=name,
                    embedding_spec=embedding_spec,
                    embedding_model_id=embedder.model_id,
                    dim=int(embedder.dim),
                    chunk_size=split.chunk_size,
                    chunk_overlap=split.chunk_overlap,
                    vector_store=vector_store,
                    versions=index_versions(),
                    **remote,
                )
                store = ChunkStore(folder, create=True)
                try:
                    # Connects to a remote store first: unreachable means no manifest, no KB.
                    Indexes.rebuild(store, manifest, create=True).save(folder)
                    manifest.save(folder)
                finally:
                    store.close()
        return cls.open(home, name)

    def close(self) -> None:
        self.store.close()

    def check_embedder(self, embedder: Embedder) -> None:
        """A KB is only ever searched or extended with the model its vectors came from."""
        if embedder.model_id != self.manifest.embedding_model_id:
            raise Conflict(
                f"knowledge base {self.name!r} was built with embedding model "
                f"{self.manifest.embedding_model_id!r}, but {embedder.model_id!r} is configured: "
                f"unset KBQA_EMBEDDING_MODEL (the KB's own model is then used) or ingest into "
                "a new KB"
            )

    def check_split(self, split: SplitConfig) -> None:
        m = self.manifest
        if (split.chunk_size, split.chunk_overlap) != (m.chunk_size, m.chunk_overlap):
            raise BadInput(
                f"knowledge base {self.name!r} is chunked with chunk_size={m.chunk_size}, "
                f"chunk_overlap={m.chunk_overlap}; use the same values (or omit them) or ingest "
                "into a new KB"
            )

    # -- reading ------------------------------------------------------------------------------

    @property
    def indexes(self) -> Indexes:
        """The derived indexes, reloaded when the store has moved on since they were loaded."""
        generation = self.store.generation()
        if self._indexes is None or generation != self._loaded_generation:
            self.manifest = Manifest.load(self.folder)
            self._indexes, _ = Indexes.open(self.folder, self.store, self.manifest)
            self._loaded_generation = generation
        return self._indexes

    def dense_search(self, query_vectors: np.ndarray, k: int) -> list[list[Hit]]:
        scores, ids = self.indexes.dense.search(query_vectors, k)
        out = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            out.append(self.store.hits(row_ids[keep], row_scores[keep]))
        return out

    def search(self, query: str, top_k: int, embedder: Embedder) -> list[Hit]:
        """Dense search: the ``top_k`` chunks most similar to ``query`` (cosine, best first).

        A store-level check only: every serving path (CLI and REST search, ask, eval, LangChain)
        goes through kbqa.retrieve.Retriever (dense + lexical, fused).
        """
        if not query or not query.strip():
            raise BadInput("the query is empty: give a question or keywords")
        if top_k < 1:
            raise BadInput(f"top_k must be at least 1, got {top_k}")
        self.check_embedder(embedder)
        return self.dense_search(embedder.embed_queries([query]), top_k)[0]

    def iter_chunks(self) -> Iterator[Hit]:
        return self.store.iter_chunks()

    def documents(self) -> list[DocumentRow]:
        return self.store.documents()

    def info(self) -> dict:
        m = self.manifest
        return {
            "name": m.name,
            "folder": str(self.folder),
            "embedding_model": m.embedding_model_id,
            "embedding_spec": m.embedding_spec,
            "dim": m.dim,
            "chunk_size": m.chunk_size,
            "chunk_overlap": m.chunk_overlap,
            "vector_store": m.vector_store,
            "dense_index": m.dense_index,
            "embedding_precisions": m.embedding_precisions,
            "generation": self.store.generation(),
            **self.store.counts(),
            "updated_at": m.updated_at,
        }

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Indexes]:
        """Hold the KB's writer lock; repair indexes a crashed writer left behind."""
        with _lock(self.folder):
            remove_temp_files(self.folder)
            self.manifest = Manifest.load(self.folder)
            # repair: under the lock a remote store may be synced with SQLite (no one else writes).
            indexes, rebuilt = Indexes.open(self.folder, self.store, self.manifest, repair=True)
            if rebuilt:
                self._checkpoint(indexes)
            self._indexes, self._loaded_generation = indexes, self.store.generation()
            yield indexes

    def _checkpoint(self, indexes: Indexes, embedder: Embedder | None = None) -> None:
        # Indexes first, manifest last: the manifest's generation is the commit point, so a
        # crash in between is seen as stale indexes and repaired, never trusted.
        indexes.save(self.folder)
        self._indexes, self._loaded_generation = indexes, self.store.generation()
        self.manifest.dense_index = indexes.dense.kind
        self.manifest.generation = self.store.generation()
        self.manifest.counts = self.store.counts()
        self.manifest.versions = index_versions()  # what built the indexes just saved
        if embedder is not None:
            # The refusal threshold is fitted here, by the one writer, under its lock: readers
            # only read it (kbqa.refusal.threshold_for).
            from kbqa.refusal import EXTRA_KEY, fit_at_checkpoint

            self.manifest.extra[EXTRA_KEY] = fit_at_checkpoint(self, embedder)
        self.manifest.save(self.folder)

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
        started = time.monotonic()
        progress = progress or _NoProgress()
        report = IngestReport(kb=self.name)
        broken: list[tuple[str, str]] = []
        files = collect_files(
            paths, config.include, config.exclude, skip_under=self.folder.parent, broken=broken
        )
        report.files_seen = len(files) + len(broken)
        report.files_failed.extend(FileFailure(path=p, error=e) for p, e in broken)
        self.check_embedder(embedder)
        self.check_split(config.split)
        progress.start(len(files))
        _check_cancel(progress, report)
        with self._writing() as indexes:
            batch = _Batch(self, indexes, embedder, config, report, progress)
            try:
                for path in files:
                    _check_cancel(progress, report)
                    batch.visit(path)
                batch.flush()
            except IngestCancelled:
                if batch.changed:  # what was committed is checkpointed, as at the end
                    self._checkpoint(indexes)
                raise
            if batch.changed:
                self._checkpoint(indexes, embedder)
        report.seconds = time.monotonic() - started
        return report

    def remove(self, source: str) -> tuple[str, int]:
        """Remove one document (by source path, or a unique suffix of it); returns (source, chunks)."""
        with self._writing() as indexes:
            doc = self.find_document(source)
            self.store.begin()
            removed = self.store.delete_document(doc.id)
            self.store.commit()
            indexes.remove(removed)
            self._checkpoint(indexes)
        return doc.source, len(removed)

    def find_document(self, source: str) -> DocumentRow:
        """The document whose source equals ``source``, its resolved path, or ends with it."""
        candidates = {source, str(Path(source).expanduser().resolve())}
        docs = self.store.documents()
        exact = [d for d in docs if d.source in candidates]
        if exact:
            return exact[0]
        tail = source.replace("\\", "/").lstrip("/")
        matches = [d for d in docs if d.source.endswith("/" + tail) or d.source == tail]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(
                f"no document {source!r} in knowledge base {self.name!r}; "
                f"list them with: kbqa kb show {self.name}"
            )
        names = ", ".join(d.source for d in matches[:5])
        raise BadInput(f"{source!r} matches several documents ({names}); give more of the path")

    def delete(self) -> None:
        """Delete the whole KB folder (under its lock, so no writer is cut off mid-batch)."""
        with _lock(self.folder):
            # First: with Milvus down nothing is deleted, and the command can be retried.
            drop_dense(self.manifest)
            self.store.close()
            shutil.rmtree(self.folder)


class _Batch:
    """One ingestion run: groups small files so the embedder sees full batches.

    Chunks of small files are pooled until ``batch_size`` is reached, embedded in one call, then
    each file is committed in a transaction of its own. A file with more chunks than fit in
    memory comfortably is streamed: embedded and inserted batch by batch inside its transaction.
    """

    def __init__(self, kb, indexes, embedder, config, report, progress) -> None:
        self.kb: KnowledgeBase = kb
        self.store: ChunkStore = kb.store
        self.indexes: Indexes = indexes
        self.embedder = embedder
        self.config: IngestConfig = config
        self.report: IngestReport = report
        self.progress: IngestProgress = progress
        self.batch_size = max(1, embedder.batch_size)
        self.stream_above = self.batch_size * 8
        self.pending: list[_FileJob] = []
        self.changed = False
        self.last_checkpoint = time.monotonic()
        self.shas: dict[str, str] = {}  # content seen in this run -> its source (duplicates)

    def visit(self, path: Path) -> None:
        from kbqa.loaders import load
        from kbqa.split import split_documents

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
        job = _FileJob(path, sha, stat.st_size, stat.st_mtime, existing, [])
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
        _check_cancel(self.progress, self.report)
        texts = [c.index_text for j in jobs for c in j.chunks]
        vectors = self._embed(texts)
        at = 0
        for job in jobs:
            n = len(job.chunks)
            self._commit(job, [(job.chunks, vectors[at : at + n])])
            at += n

    def _stream(self, job: _FileJob, rest: Iterator[Chunk]) -> None:
        """Ingest a large file batch by batch inside one transaction."""

        def batches() -> Iterator[tuple[list[Chunk], np.ndarray]]:
            buf = job.chunks
            for chunk in rest:
                buf.append(chunk)
                if len(buf) >= self.batch_size:
                    _check_cancel(self.progress, self.report)
                    yield buf, self._embed([c.index_text for c in buf])
                    buf = []
            if buf:
                yield buf, self._embed([c.index_text for c in buf])

        self._commit(job, batches())

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedder.embed_passages(texts)
        precision = self.embedder.precision
        if precision not in self.kb.manifest.embedding_precisions:
            self.kb.manifest.embedding_precisions.append(precision)  # saved at the checkpoint
        self.progress.chunks_done(len(texts))
        return vectors

    def _commit(self, job: _FileJob, batches) -> None:
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
            self.kb._checkpoint(self.indexes)
            self.last_checkpoint = time.monotonic()

    def _record_failure(self, job: _FileJob, error: Exception) -> None:
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


class IngestCancelled(KbqaError):
    """A batch stopped on request (progress.cancelled()); ``report`` holds what was committed."""

    http_status = 409

    def __init__(self, report: IngestReport) -> None:
        done = report.files_added + report.files_updated + report.files_unchanged
        super().__init__(
            f"ingestion into {report.kb!r} was cancelled after {done} file(s); files already "
            "committed stay, the rest were not ingested"
        )
        self.report = report


def _check_cancel(progress: IngestProgress, report: IngestReport) -> None:
    # Optional in the protocol: front ends that cannot cancel (the CLI) leave it out.
    cancelled = getattr(progress, "cancelled", None)
    if cancelled is not None and cancelled():
        raise IngestCancelled(report)


class WriterBusy(Conflict):
    """The KB's writer lock is held by another process (or another writer in this one)."""


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files a writer killed mid-checkpoint left (call under the lock).

    Each is up to the size of its index and is never read; only the lock holder writes them,
    so under the lock none of them can be in use.
    """
    from kbqa.store.atomic import temp_files

    gone = []
    for path in temp_files(folder):
        path.unlink(missing_ok=True)
        gone.append(path)
    return gone


@contextmanager
def _lock(folder: Path, timeout: float = 10.0) -> Iterator[None]:
    """The one-writer-per-KB lock (an OS file lock, so a killed writer releases it)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as e:
        raise WriterBusy(
            f"another process is writing knowledge base {folder.name!r} (lock {folder / LOCK_FILE}); "
            "wait for it to finish and try again"
        ) from e
    try:
        yield
    finally:
        lock.release()
