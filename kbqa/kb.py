"""KnowledgeBase: one KB folder opened for reading (from many threads); writes go through writer()."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kbqa.config import IngestConfig, SplitConfig
from kbqa.errors import BadInput, Conflict, NotFound
from kbqa.ingest.progress import IngestProgress
from kbqa.store.chunks import FILE_NAME as CHUNKS_FILE
from kbqa.store.chunks import ChunkStore, DocumentRow
from kbqa.store.dense import creation_settings, drop_dense
from kbqa.store.indexes import Indexes
from kbqa.store.lock import writer_lock
from kbqa.store.manifest import FILE_NAME as MANIFEST
from kbqa.store.manifest import Manifest, index_versions
from kbqa.types import Hit, IngestReport

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder
    from kbqa.ingest.writer import KbWriter

_NAME = re.compile(r"[^\W_][\w.-]{0,63}")


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


def kb_exists(home: Path, name: str) -> bool:
    """A KB is a folder with a manifest (written last when a KB is created)."""
    return (home / name / MANIFEST).is_file()


def list_kbs(home: Path) -> list[str]:
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if kb_exists(home, p.name))


class KnowledgeBase:
    """One KB folder: ``manifest.json``, ``chunks.sqlite`` (source of truth), derived indexes.

    Read from many threads at once (the API keeps one per KB). It only ever sees committed
    SQLite state (WAL) and indexes loaded or caught up from it; ``writer()`` is the one way to
    change the folder, on indexes of its own that readers get only when it checkpoints.
    """

    def __init__(self, folder: Path, manifest: Manifest, store: ChunkStore) -> None:
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self._indexes: Indexes | None = None
        self._loaded_generation = -1
        self._reload = threading.Lock()
        self._writers = 0  # writers open on this object: readers keep what was published
        # A KB deleted and created again under the same name is another file (KbRegistry).
        self.inode = (folder / CHUNKS_FILE).stat().st_ino

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
        return cls(folder, Manifest.load(folder), ChunkStore(folder))

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
        with writer_lock(folder):
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

    def split_config(self) -> SplitConfig:
        """The chunking this KB was built with (every later batch must use the same)."""
        m = self.manifest
        return SplitConfig(chunk_size=m.chunk_size, chunk_overlap=m.chunk_overlap)

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
        """The derived indexes, reloaded when the store has moved on since they were loaded.

        While a writer of this object is open they stay as its last checkpoint published them.
        """
        # Read the generation before the indexes: _publish sets the indexes first.
        loaded, current = self._loaded_generation, self._indexes
        if current is not None and (self._writers or loaded == self.store.pinned_generation()):
            return current
        # One thread reloads after a writer commits; the others wait instead of each rebuilding.
        with self._reload:
            generation = self.store.generation()
            if self._indexes is not None and (
                self._writers or generation == self._loaded_generation
            ):
                return self._indexes
            try:
                self.manifest = Manifest.load(self.folder)
                self._indexes, _ = Indexes.open(self.folder, self.store, self.manifest)
            except OSError as e:
                if (self.folder / MANIFEST).is_file():
                    raise
                # Deleted while this request was on its way: as if it had come a moment later.
                raise NotFound(f"knowledge base {self.name!r} was deleted") from e
            self._loaded_generation = generation
            return self._indexes

    def _publish(self, indexes: Indexes | None, generation: int, manifest: Manifest) -> None:
        """A writer's checkpoint: readers move on to ``indexes`` (None: load the saved files)."""
        with self._reload:
            self._indexes, self._loaded_generation = indexes, generation
            self.manifest = manifest

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
        goes through kbqa.retrieval.retriever.Retriever (dense + lexical, fused).
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
    def writer(self) -> Iterator[KbWriter]:
        """The KB's one writer: holds its lock (WriterBusy if another process has it)."""
        from kbqa.ingest.writer import KbWriter

        with KbWriter.open(self) as writer:
            self._writers += 1
            try:
                yield writer
            finally:
                self._writers -= 1

    def ingest(
        self,
        paths: Sequence[Path],
        embedder: Embedder,
        config: IngestConfig,
        progress: IngestProgress | None = None,
    ) -> IngestReport:
        """One batch in a writer of its own (KbWriter.ingest), checked before the lock is taken."""
        from kbqa.ingest.writer import plan

        planned = plan(self, paths, embedder, config, progress)
        with self.writer() as writer:
            return writer.run(planned, embedder, config)

    def remove(self, source: str) -> tuple[str, int]:
        """Remove one document in a writer of its own (KbWriter.remove); returns (source, chunks)."""
        with self.writer() as writer:
            return writer.remove(source)

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
        with writer_lock(self.folder):
            # First: with Milvus down nothing is deleted, and the command can be retried.
            drop_dense(self.manifest)
            self.store.close()
            shutil.rmtree(self.folder)
