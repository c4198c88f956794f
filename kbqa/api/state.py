"""What a server process holds: the models, one reader per KB, the job pool, the key ring."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kbqa.api.jobs import JobManager
from kbqa.api.security import KeyRing
from kbqa.config import Settings, apply_credentials
from kbqa.kb import KnowledgeBase, validate_name
from kbqa.store.chunks import FILE_NAME as CHUNKS_FILE
from kbqa.store.manifest import FILE_NAME as MANIFEST

if TYPE_CHECKING:  # for the annotations only: importing these would pull in numpy and models
    from types import EllipsisType

    from kbqa.api.llm_queue import QueuedGenerator
    from kbqa.embed.base import Embedder
    from kbqa.llm.base import Generator
    from kbqa.prompt import Prompts


class KbRegistry:
    """One KnowledgeBase per KB name, read by every request; opened on first use and dropped when
    its folder goes away. Writers (ingestion jobs, removals) open their own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._open: dict[str, KnowledgeBase] = {}
        self._paths: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def _current(self, name: str, kb: KnowledgeBase | None) -> bool:
        if kb is None:
            return False
        chunks, manifest = self._files(name)
        try:
            # A KB deleted and created again under the same name is a different file.
            return os.stat(chunks).st_ino == kb.inode and os.path.isfile(manifest)
        except OSError:
            return False

    def _files(self, name: str) -> tuple[str, str]:
        """The two files ``_current`` checks, as strings, kept per open KB's name (pathlib's
        joins on every request showed in the server's profile)."""
        files = self._paths.get(name)
        if files is None:
            files = self._paths[name] = (
                str(self.home / name / CHUNKS_FILE), str(self.home / name / MANIFEST)
            )  # fmt: skip
        return files

    def get(self, name: str) -> KnowledgeBase:
        validate_name(name)
        kb = self._open.get(name)
        if self._current(name, kb):
            return kb  # type: ignore[return-value]
        with self._lock:
            kb = self._open.get(name)
            if self._current(name, kb):
                return kb  # type: ignore[return-value]
            if kb is not None:
                self._open.pop(name, None)  # not closed: see forget()
            kb = KnowledgeBase.open(self.home, name)
            self._open[name] = kb
            return kb

    def forget(self, name: str) -> None:
        """Stop handing out this KB; requests already holding it finish on it.

        It is not closed here: a search between its lookup and its SQLite read would meet a
        closed connection (a 500). SQLite keeps reading a deleted file through its open handle,
        and the connection closes when the last request lets go of the KB.
        """
        with self._lock:
            self._open.pop(name, None)

    def close(self) -> None:
        with self._lock:
            kbs, self._open = list(self._open.values()), {}
        for kb in kbs:
            kb.close()


@dataclass
class Services:
    """Everything routes need, built once in the lifespan (tests build their own)."""

    settings: Settings
    embedder: Embedder
    generator: QueuedGenerator | None  # None: extractive answers
    prompts: Prompts
    keys: KeyRing
    kbs: KbRegistry
    jobs: JobManager
    query_pool: ThreadPoolExecutor  # searches and extractive answers: kbqa.api.deps.run_query
    feedback_lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        self.jobs.shutdown()
        self.query_pool.shutdown(wait=False, cancel_futures=True)
        if self.generator is not None:
            self.generator.close()
        self.kbs.close()


def build_services(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    generator: Generator | None | EllipsisType = ...,
    keys: KeyRing | None = None,
) -> Services:
    """Load the models named by ``settings`` (unless given) and open nothing else yet."""
    from kbqa.api.llm_queue import QueuedGenerator
    from kbqa.prompt import load_prompts

    # Built per request later; built once now (as load_settings does) so that a Settings made
    # in code with a bad value stops the start-up instead of failing every question with a 422.
    settings.ask_config()
    apply_credentials(settings)
    if embedder is None:
        from kbqa.embed.factory import load_embedder

        embedder = load_embedder(settings.embedding_model, settings.embed_config())
        embedder.load()
    from kbqa.retrieval.bridge import dictionary
    from kbqa.retrieval.signals import warm

    warm()  # the first question would otherwise wait 1.5 s for jieba's tables
    # And the first in another language 1 s for CC-CEDICT (58 MiB kept; the CLI reads it only
    # for such a question, as one question there pays it either way).
    dictionary()
    if generator is ...:
        from kbqa.llm import load_generator

        generator = load_generator(settings.llm, load=True)
    if generator is not None and not isinstance(generator, QueuedGenerator):
        generator = QueuedGenerator(generator, settings.llm_queue)
    return Services(
        settings=settings,
        embedder=embedder,
        generator=generator,
        prompts=load_prompts(),
        keys=keys if keys is not None else KeyRing.from_settings(settings),
        kbs=KbRegistry(Path(settings.home)),
        jobs=JobManager(),
        query_pool=ThreadPoolExecutor(
            settings.query_threads or os.cpu_count() or 2, thread_name_prefix="kbqa-query"
        ),
    )
