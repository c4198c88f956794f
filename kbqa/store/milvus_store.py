"""Milvus vector store: one collection per KB, primary key = chunk id, inner product (= cosine)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kbqa.errors import BadInput, Conflict
from kbqa.store.milvus_client import MilvusUnavailable, connect, error_message

if TYPE_CHECKING:
    from kbqa.store.chunks import ChunkStore
    from kbqa.store.manifest import Manifest

log = logging.getLogger(__name__)

ID_FIELD = "id"
VECTOR_FIELD = "vector"
# Rows per upsert / ids per delete: far below Milvus's 64 MB gRPC message limit at dim 1024.
BATCH = 1000
# Milvus rejects a search limit (topk) above this.
MAX_LIMIT = 16384


class MilvusStore:
    """The dense index of one KB in a Milvus collection; satisfies ``VectorStore``.

    Writes go to Milvus at once (there is no file to save). Ids come from the chunk store, so
    upserts make replays idempotent. ``alive`` maps ids to a keep-mask: vectors whose chunk is
    not (or no longer) committed in SQLite - a writer's file in flight, or a crash's leftovers -
    are dropped from results, so a reader never sees a vector without its chunk.
    """

    kind = "autoindex"

    def __init__(
        self,
        client,
        uri: str,
        collection: str,
        dim: int,
        alive: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._client = client
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self.alive = alive
        self.created = False  # made by this open (new KB, or a lost collection recreated)

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        uri: str,
        collection: str,
        dim: int,
        *,
        create: bool = False,
        alive: Callable[[np.ndarray], np.ndarray] | None = None,
        missing_ok: bool = False,
    ) -> MilvusStore:
        """Connect (failing fast if Milvus is down) and check the collection.

        ``create``: a new KB's collection, which must not already hold vectors. ``missing_ok``:
        recreate a lost collection (a writer then refills it from the chunk store).
        """
        client = connect(uri)
        self = cls(client, uri, collection, dim, alive)
        if self._call("has_collection", collection):
            self._check_dim()
            self._load()
            if create and len(self):
                raise Conflict(
                    f"Milvus collection {collection!r} at {uri} already holds {len(self)} vectors "
                    "that no KB here owns (another deployment, or a KB deleted by hand): drop it "
                    "in Milvus or give the KB another name"
                )
        elif create or missing_ok:
            self._create()
            self.created = True
            self._load()
        else:
            raise Conflict(
                f"Milvus collection {collection!r} at {uri} does not exist, but the KB expects it: "
                "run any `kbqa ingest` into the KB to rebuild it from chunks.sqlite"
            )
        return self

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        index = self._client.prepare_index_params()
        # AUTOINDEX: the server picks (HNSW-like on a cluster, flat on milvus-lite); IP on
        # normalised vectors is cosine, the score kbqa uses everywhere.
        index.add_index(field_name=VECTOR_FIELD, index_type="AUTOINDEX", metric_type="IP")
        # Strong: a search right after a commit sees it, as with FAISS.
        self._call(
            "create_collection",
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level="Strong",
        )

    def _check_dim(self) -> None:
        info = self._call("describe_collection", self.collection)
        vec = [f for f in info["fields"] if f["name"] == VECTOR_FIELD]
        found = int(vec[0]["params"]["dim"]) if vec else None
        if found != self.dim:
            raise Conflict(
                f"Milvus collection {self.collection!r} at {self.uri} holds vectors of dimension "
                f"{found}, but this KB's embedding model gives {self.dim}: drop the collection in "
                "Milvus, or use another KB name (each KB gets its own collection)"
            )

    def _load(self) -> None:
        # A collection is released after a server restart; search needs it in memory.
        state = self._call("get_load_state", self.collection)
        if "NotLoad" in str(state.get("state")):
            self._call("load_collection", self.collection)

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - every pymilvus failure is reported the same way
            raise MilvusUnavailable(
                f"Milvus at {self.uri} failed on {method} of collection {self.collection!r}: "
                f"{error_message(e)}; check that the server is up and healthy, then retry (anything "
                "committed before stays)"
            ) from e

    # -- the VectorStore protocol -------------------------------------------------------------

    def __len__(self) -> int:
        rows = self._call(
            "query", self.collection, filter="", output_fields=["count(*)"], timeout=60
        )
        return int(rows[0]["count(*)"])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise Conflict(
                f"vectors have dimension {vectors.shape[1]} but collection {self.collection!r} "
                f"holds {self.dim}; this KB was built with another embedding model"
            )
        ids = np.asarray(ids, dtype=np.int64)
        for at in range(0, len(ids), BATCH):
            rows = [
                {ID_FIELD: int(i), VECTOR_FIELD: v.tolist()}
                for i, v in zip(ids[at : at + BATCH], vectors[at : at + BATCH], strict=True)
            ]
            self._call("upsert", self.collection, rows)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        for at in range(0, len(ids), BATCH):
            self._call("delete", self.collection, ids=[int(i) for i in ids[at : at + BATCH]])

    def search(
        self, queries: np.ndarray, k: int, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k), best first; missing slots have id -1."""
        queries = np.asarray(queries, dtype=np.float32)
        out_s = np.zeros((len(queries), k), np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        params: dict = {"metric_type": "IP"}
        if ef_search:
            params["params"] = {"ef": max(ef_search, k)}
        # Over-fetch so that vectors without a committed chunk can be dropped; fetch more only
        # in the rare case that many of them rank high.
        limit = min(2 * k, MAX_LIMIT)
        pending = list(range(len(queries)))
        while pending:
            found = self._call(
                "search",
                self.collection,
                data=queries[pending].tolist(),
                limit=limit,
                output_fields=[ID_FIELD],
                search_params=params,
            )
            retry = []
            for row, hits in zip(pending, found, strict=True):
                ids = np.fromiter((h[ID_FIELD] for h in hits), np.int64, len(hits))
                scores = np.fromiter((h["distance"] for h in hits), np.float32, len(hits))
                if self.alive is not None and len(ids):
                    keep = self.alive(ids)
                    ids, scores = ids[keep], scores[keep]
                if len(ids) < k and len(hits) == limit and limit < MAX_LIMIT:
                    retry.append(row)
                n = min(k, len(ids))
                out_s[row, :n], out_i[row, :n] = scores[:n], ids[:n]
            pending, limit = retry, min(limit * 4, MAX_LIMIT)
        return out_s, out_i

    def vectors_of(self, ids: list[int]) -> np.ndarray | None:
        return None  # a round trip to the server would cost more than SQLite's read

    def save(self, folder: Path) -> None:
        """Nothing to write: Milvus persists each write itself (its own log), not at checkpoints."""

    def optimise(self) -> None:
        """Nothing to do: Milvus builds and compacts its index segments in the background."""

    # -- beyond the protocol ------------------------------------------------------------------

    def ids(self) -> Iterator[np.ndarray]:
        """Every id in the collection, in batches."""
        it = self._call(
            "query_iterator",
            self.collection,
            batch_size=BATCH * 10,
            filter="",
            output_fields=[ID_FIELD],
        )
        try:
            while True:
                try:
                    rows = it.next()
                except Exception as e:  # noqa: BLE001
                    raise MilvusUnavailable(
                        f"Milvus at {self.uri} failed listing collection {self.collection!r}: "
                        f"{error_message(e)}; check the server and retry"
                    ) from e
                if not rows:
                    return
                yield np.fromiter((r[ID_FIELD] for r in rows), np.int64, len(rows))
        finally:
            it.close()

    def sync(self, store: ChunkStore) -> tuple[int, int]:
        """Make the collection hold exactly the chunk store's vectors; returns (added, removed).

        The repair for a writer that stopped between its Milvus writes and its SQLite commit
        (vectors of an uncommitted file) or after the commit (old vectors of a replaced file),
        and for a collection that lost data. Only safe under the KB's writer lock: a concurrent
        writer's in-flight vectors would look like leftovers.
        """
        present = np.concatenate([np.zeros(0, np.int64), *self.ids()])
        truth = store.chunk_ids()
        extra = np.setdiff1d(present, truth)
        self.remove(extra)
        missing = np.setdiff1d(truth, present)
        added = 0
        if len(missing):
            for ids, vectors in store.iter_vectors(self.dim):
                keep = np.isin(ids, missing)
                self.add(ids[keep], vectors[keep])
                added += int(keep.sum())
        return added, len(extra)

    def drop(self) -> None:
        """Delete the whole collection (when its KB is deleted)."""
        if self._call("has_collection", self.collection):
            self._call("drop_collection", self.collection)


def open_for_kb(
    manifest: Manifest,
    store: ChunkStore,
    *,
    create: bool = False,
    writer: bool = False,
    stale: bool = False,
) -> MilvusStore:
    """The KB's collection, checked; a ``writer`` (KB lock held) first syncs it with SQLite.

    A writer syncs when the manifest's generation lags SQLite's (``stale``: a writer stopped
    between its Milvus writes and its checkpoint) or the collection was lost and is recreated.
    """
    if not manifest.milvus_uri or not manifest.milvus_collection:
        raise BadInput(
            f"knowledge base {manifest.name!r} uses Milvus but its manifest.json lacks "
            "milvus_uri or milvus_collection; the KB folder is damaged: re-ingest into a new KB"
        )
    dense = MilvusStore.open(
        manifest.milvus_uri,
        manifest.milvus_collection,
        manifest.dim,
        create=create,
        alive=alive_in(store),
        missing_ok=writer,
    )
    if writer and (stale or dense.created):
        added, removed = dense.sync(store)
        if added or removed:
            log.info("Milvus collection %s: %d vectors restored, %d stale removed",
                     dense.collection, added, removed)  # fmt: skip
    return dense


def drop_for_kb(manifest: Manifest) -> None:
    """Drop a KB's collection (the KB is being deleted); a missing one is fine."""
    if manifest.milvus_uri and manifest.milvus_collection:
        client = connect(manifest.milvus_uri)
        MilvusStore(client, manifest.milvus_uri, manifest.milvus_collection, manifest.dim).drop()


def alive_in(store: ChunkStore) -> Callable[[np.ndarray], np.ndarray]:
    """A keep-mask over ids: True where the chunk is committed in ``store``."""

    def alive(ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, store.stored_ids(ids.tolist()))

    return alive
