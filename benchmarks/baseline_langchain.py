"""The plain LangChain recipe users pick instead: Chinese RecursiveCharacterTextSplitter 250/50,
FAISS from langchain_community, similarity_search; same embedding model and prefixes as kbqa."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from kbqa.embed.base import Embedder

# The separators Chinese LangChain tutorials use: paragraphs, lines, then sentence ends.
SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", "，", " ", ""]
CHUNK_SIZE = 250
CHUNK_OVERLAP = 50


class KbqaEmbeddings(Embeddings):
    """kbqa's Embedder as LangChain Embeddings, so both sides run exactly the same model."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()


@dataclass
class Built:
    """An ingested FAISS store and what ingestion cost (wall and CPU seconds)."""

    store: object
    chunks: int
    seconds: float
    cpu_seconds: float


def ingest(files: Sequence[Path], embedder: Embedder, save_to: Path | None = None) -> Built:
    """Load, split, embed and index ``files`` the way the recipe does (and save, like it does)."""
    from langchain_community.document_loaders import TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    wall, cpu = time.perf_counter(), time.process_time()
    docs = [d for f in files for d in TextLoader(str(f), encoding="utf-8").load()]
    splitter = RecursiveCharacterTextSplitter(
        separators=SEPARATORS, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP
    )
    chunks = splitter.split_documents(docs)
    store = FAISS.from_documents(chunks, KbqaEmbeddings(embedder))
    if save_to is not None:
        store.save_local(str(save_to))
    return Built(store, len(chunks), time.perf_counter() - wall, time.process_time() - cpu)


def search(store, question: str, k: int) -> tuple[list[str], float]:
    """(sources of the top ``k`` chunks, milliseconds the search took)."""
    started = time.perf_counter()
    docs = store.similarity_search(question, k=k)
    ms = (time.perf_counter() - started) * 1000
    return [d.metadata["source"] for d in docs], round(ms, 2)
