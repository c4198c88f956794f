"""Background ingestion jobs: uploaded files are ingested off the request, progress kept per job."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbqa.errors import Conflict, KbqaError, NotFound

log = logging.getLogger(__name__)

KEEP_JOBS = 500  # finished jobs remembered for GET /v1/jobs/{id}; the oldest are forgotten


@dataclass
class Job:
    """One ingestion run, as GET /v1/jobs/{id} shows it."""

    id: str
    kb: str
    files: list[str]
    status: str = "queued"  # queued | running | done | failed | cancelled
    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    report: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kb": self.kb,
            "status": self.status,
            "files": self.files,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "chunks": self.chunks,
            "report": self.report,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class _Progress:
    """The IngestProgress protocol, writing into a Job (read by other threads; ints only)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def start(self, total_files: int) -> None:
        self.job.files_total = total_files

    def file_done(self, path: str, status: str) -> None:
        self.job.files_done += 1

    def chunks_done(self, n: int) -> None:
        self.job.chunks += n

    def cancelled(self) -> bool:
        """Asked between files and between embedding batches (kbqa.kb.KnowledgeBase.ingest)."""
        return self.job.cancel.is_set()


# run(paths, progress) -> report dict; it opens its own writer KB (never the shared reader).
IngestFn = Callable[[list[Path], _Progress], dict[str, Any]]


class JobManager:
    """Runs ingestion jobs; one worker thread per KB (one writer per KB), KBs side by side.

    A single pool for every KB let one slow file hold up the uploads of all the others; a
    worker of its own per KB keeps the one-writer rule without that (an idle one just waits).
    """

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def submit(self, kb: str, paths: list[Path], run: IngestFn) -> Job:
        job = Job(id=uuid.uuid4().hex, kb=kb, files=[p.name for p in paths])
        job.files_total = len(paths)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].status in ("queued", "running"):
                    break
                self._jobs.pop(oldest)
            pool = self._pools.get(kb)
            if pool is None:
                pool = ThreadPoolExecutor(1, thread_name_prefix=f"kbqa-ingest-{kb}"[:40])
                self._pools[kb] = pool
            pool.submit(self._run, job, paths, run)
        return job

    def _run(self, job: Job, paths: list[Path], run: IngestFn) -> None:
        from kbqa.ingest.progress import IngestCancelled

        if not job.cancel.is_set():
            job.status = "running"
        # A job cancelled while queued still runs: ``run`` stops at once and drops its uploads.
        try:
            job.report = run(paths, _Progress(job))
            job.status = "done"
        except IngestCancelled as e:
            job.report, job.status = e.report.to_dict(), "cancelled"
            job.error = job.error or str(e)
        except KbqaError as e:
            job.error, job.status = str(e), "failed"
        except Exception as e:  # noqa: BLE001 - a job records its failure; the server goes on
            log.exception("ingestion job %s failed", job.id)
            job.error, job.status = f"{type(e).__name__}: {e}", "failed"
        finally:
            job.finished_at = time.time()

    def cancel(self, job_id: str) -> Job:
        """Stop a job: a queued one never starts, a running one stops at its next file or batch.

        Files already committed stay; the job's uploads not yet ingested are dropped.
        """
        job = self.get(job_id)
        with self._lock:
            if job.status in ("done", "failed", "cancelled"):
                raise Conflict(
                    f"job {job_id} has already finished ({job.status}); nothing to cancel"
                )
            job.cancel.set()
            if job.status == "queued":
                job.status, job.error = "cancelled", "cancelled before it started"
                job.finished_at = time.time()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} (jobs are kept in memory until the server restarts)")
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def busy(self, kb: str) -> bool:
        return any(j.kb == kb and j.status in ("queued", "running") for j in self.jobs())

    def shutdown(self) -> None:
        # Running jobs finish their current file; each file is its own transaction anyway.
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
