"""The SQLite chunk store: documents, chunks and their vectors; the source of truth of a KB."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbqa.types import Chunk, Hit

FILE_NAME = "chunks.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL UNIQUE,
    sha256 TEXT,
    size INTEGER,
    mtime REAL,
    loader TEXT,
    status TEXT NOT NULL,
    error TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
-- AUTOINCREMENT: a chunk id is never reused, so a stale vector can never name a new chunk.
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id),
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    embed_text TEXT,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0');
"""


@dataclass
class DocumentRow:
    id: int
    source: str
    sha256: str | None
    size: int | None
    mtime: float | None
    loader: str | None
    status: str
    error: str | None
    chunks: int
    updated_at: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ChunkStore:
    """One connection to ``chunks.sqlite``; WAL mode so readers never wait for the writer."""

    def __init__(self, folder: Path, create: bool = False) -> None:
        path = folder / FILE_NAME
        if not create and not path.is_file():
            raise FileNotFoundError(path)
        # Autocommit mode: transactions are begun and committed explicitly, nothing implicit.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._counts: tuple[int, dict[str, int]] | None = None  # (generation, counts)
        self._pin = threading.local()  # .generation: see pinned()
        # WAL + NORMAL: a killed process loses nothing committed; only power loss can drop the
        # last transactions, and never corrupts the file. WAL also lets readers go on reading
        # the last committed state while a writer holds its transaction.
        self._db.execute("PRAGMA synchronous=NORMAL")
        if create:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- transactions -------------------------------------------------------------------------

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> int:
        """Bump the generation and commit; returns the new generation."""
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )
        self._db.execute("COMMIT")
        return self.generation()

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def generation(self) -> int:
        """The last committed generation, read now (what a writer and index files compare)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def pinned(self) -> Iterator[int]:
        """The generation read once for this thread's block (one search or answer), which
        ``pinned_generation`` then gives; a block inside another keeps the outer one's.

        The read paths' caches (indexes, counts, public paths, refusal) each asked SQLite,
        four times an answer; every call gave up the interpreter lock, and under load each
        waited to get it back (issue 14). One read also shows the block one state of the KB.
        """
        outer = getattr(self._pin, "generation", None)
        if outer is not None:
            yield outer
            return
        self._pin.generation = self.generation()
        try:
            yield self._pin.generation
        finally:
            self._pin.generation = None

    def pinned_generation(self) -> int:
        """The generation ``pinned`` for this thread's read, else read now."""
        pinned = getattr(self._pin, "generation", None)
        return self.generation() if pinned is None else pinned

    # -- documents ----------------------------------------------------------------------------

    def document(self, source: str) -> DocumentRow | None:
        row = self._db.execute("SELECT * FROM documents WHERE source = ?", (source,)).fetchone()
        return DocumentRow(*row) if row else None

    def document_by_sha(self, sha256: str) -> DocumentRow | None:
        """A document indexed (status ok) with this content, if any: the first by id."""
        row = self._db.execute(
            "SELECT * FROM documents WHERE sha256 = ? AND status = 'ok' ORDER BY id LIMIT 1",
            (sha256,),
        ).fetchone()
        return DocumentRow(*row) if row else None

    def document_by_id(self, doc_id: int) -> DocumentRow | None:
        row = self._db.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return DocumentRow(*row) if row else None

    def documents(self) -> list[DocumentRow]:
        rows = self._db.execute("SELECT * FROM documents ORDER BY source").fetchall()
        return [DocumentRow(*r) for r in rows]

    def upsert_document(
        self,
        source: str,
        *,
        sha256: str | None,
        size: int | None,
        mtime: float | None,
        loader: str | None,
        status: str,
        error: str | None,
        chunks: int | None = None,
    ) -> int:
        """Insert or update a document row (inside the caller's transaction); returns its id."""
        now = time.time()
        existing = self.document(source)
        if existing is None:
            cur = self._db.execute(
                "INSERT INTO documents(source, sha256, size, mtime, loader, status, error, chunks,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (source, sha256, size, mtime, loader, status, error, chunks or 0, now),
            )
            return int(cur.lastrowid)
        self._db.execute(
            "UPDATE documents SET sha256 = ?, size = ?, mtime = ?, loader = ?, status = ?,"
            " error = ?, chunks = COALESCE(?, chunks), updated_at = ? WHERE id = ?",
            (sha256, size, mtime, loader, status, error, chunks, now, existing.id),
        )
        return existing.id

    def touch_document(self, doc_id: int, size: int, mtime: float) -> None:
        """Record a new size/mtime for unchanged content (no generation bump: no chunk moved).

        Without it an identical re-upload keeps the old mtime and looks "not ingested" at every
        start (kbqa.api.uploads.not_ingested compares size and mtime).
        """
        self._db.execute(
            "UPDATE documents SET size = ?, mtime = ? WHERE id = ?", (size, mtime, doc_id)
        )

    def delete_document(self, doc_id: int) -> np.ndarray:
        """Delete a document and its chunks; returns the removed chunk ids."""
        removed = self.delete_chunks(doc_id)
        self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return removed

    # -- chunks -------------------------------------------------------------------------------

    def delete_chunks(self, doc_id: int) -> np.ndarray:
        ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        return np.asarray(ids, dtype=np.int64)

    def add_chunks(
        self, doc_id: int, first_ordinal: int, chunks: list[Chunk], vectors: np.ndarray
    ) -> np.ndarray:
        """Insert chunks with their vectors; returns the new chunk ids in order."""
        ids = []
        for i, (chunk, vec) in enumerate(zip(chunks, vectors, strict=True)):
            cur = self._db.execute(
                "INSERT INTO chunks(doc_id, ordinal, text, embed_text, metadata, vector)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    first_ordinal + i,
                    chunk.text,
                    chunk.embed_text,
                    json.dumps(chunk.metadata, ensure_ascii=False),
                    np.asarray(vec, dtype=np.float32).tobytes(),
                ),
            )
            ids.append(cur.lastrowid)
        return np.asarray(ids, dtype=np.int64)

    def hits(self, ids: Iterable[int], scores: Iterable[float] | None = None) -> list[Hit]:
        """The chunks with these ids as Hits, in the given order; ids no longer stored are skipped."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            "SELECT c.id, c.doc_id, d.source, c.text, c.metadata FROM chunks c"
            f" JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            ids,
        ).fetchall()
        by_id = {r[0]: r for r in rows}
        score_list = list(scores) if scores is not None else [0.0] * len(ids)
        out = []
        for cid, score in zip(ids, score_list, strict=True):
            r = by_id.get(cid)
            if r is not None:
                out.append(Hit(r[0], r[1], r[2], r[3], float(score), json.loads(r[4])))
        return out

    def stored_ids(self, ids: Iterable[int]) -> np.ndarray:
        """Which of ``ids`` are committed chunks (an existence test: no text or metadata read)."""
        ids = [int(i) for i in ids]
        if not ids:
            return np.zeros(0, np.int64)
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT id FROM chunks WHERE id IN ({marks})", ids).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    def neighbours(self, chunk_id: int, window: int) -> list[Hit]:
        """The chunk and up to ``window`` chunks either side of it in its document, in order."""
        row = self._db.execute(
            "SELECT doc_id, ordinal FROM chunks WHERE id = ?", (chunk_id,)
        ).fetchone()
        if row is None:
            return []
        ids = self._db.execute(
            "SELECT id FROM chunks WHERE doc_id = ? AND ordinal BETWEEN ? AND ? ORDER BY ordinal",
            (row[0], row[1] - window, row[1] + window),
        ).fetchall()
        return self.hits([i for (i,) in ids])

    def faq_questions(self, limit: int) -> list[str]:
        """Stored questions of Q/A rows (first ``limit``, by id): suggestions for a chat page."""
        rows = self._db.execute(
            "SELECT json_extract(metadata, '$.question') FROM chunks"
            " WHERE json_extract(metadata, '$.question') IS NOT NULL ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [q for (q,) in rows if isinstance(q, str) and q.strip()]

    def headings(self, limit: int) -> list[str]:
        """Distinct innermost headings of chunks, for suggestions when a KB has no Q/A rows."""
        rows = self._db.execute(
            "SELECT DISTINCT json_extract(metadata, '$.headings[#-1]') FROM chunks"
            " WHERE json_extract(metadata, '$.headings[#-1]') IS NOT NULL ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [h for (h,) in rows if isinstance(h, str) and h.strip()]

    def iter_chunks(self, batch: int = 2000) -> Iterator[Hit]:
        """Every stored chunk, in id order, as Hits with score 0."""
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT c.id, c.doc_id, d.source, c.text, c.metadata FROM chunks c"
                " JOIN documents d ON d.id = c.doc_id WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                yield Hit(r[0], r[1], r[2], r[3], 0.0, json.loads(r[4]))
            last = rows[-1][0]

    def iter_vectors(self, dim: int, batch: int = 10000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in batches, for rebuilding the dense index from the source of truth."""
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
            yield ids, vecs
            last = rows[-1][0]

    def vectors_of(self, ids: list[int], dim: int) -> np.ndarray:
        """Stored vectors for these chunk ids, in order (zeros for an id no longer stored)."""
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", ids)
        by_id = {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}
        zero = np.zeros(dim, np.float32)
        return np.stack([by_id.get(int(i), zero) for i in ids]) if ids else zero[None, :0]

    def iter_texts(self, batch: int = 5000) -> Iterator[tuple[np.ndarray, list[str]]]:
        """(ids, index texts) in batches, for rebuilding the lexical index."""
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT id, COALESCE(embed_text, text) FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return
            yield np.asarray([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]
            last = rows[-1][0]

    def last_chunk_id(self) -> int:
        """The newest chunk's id, 0 for none (ids only grow: AUTOINCREMENT)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return int(row[0]) if row else 0

    def chunks_after(self, chunk_id: int) -> int:
        """How many stored chunks were added after ``chunk_id``."""
        return self._db.execute("SELECT COUNT(*) FROM chunks WHERE id > ?", (chunk_id,)).fetchone()[
            0
        ]

    def counts(self) -> dict[str, int]:
        """Documents indexed and failed, and chunks: counted once per generation, as every
        answer checks its calibration against the KB's size (three table scans a request took
        about 5% of a query thread's time; issue 14). A transaction on this connection (a
        writer's) shows its uncommitted rows, so while one is open they are counted afresh."""
        generation = None if self._db.in_transaction else self.pinned_generation()
        cached = self._counts
        if cached is not None and cached[0] == generation:
            return dict(cached[1])
        docs = self._db.execute("SELECT COUNT(*) FROM documents WHERE status = 'ok'").fetchone()[0]
        failed = self._db.execute(
            "SELECT COUNT(*) FROM documents WHERE status = 'failed'"
        ).fetchone()[0]
        chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        counts = {"documents": docs, "documents_failed": failed, "chunks": chunks}
        if generation is not None and not self._db.in_transaction:
            # The generation is read first: a commit in between makes the next call count again.
            self._counts = (generation, counts)
        return dict(counts)

    def chunk_ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)
