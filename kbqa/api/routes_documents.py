"""Documents of a KB: upload (ingested by a background job), list, remove; job progress."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from kbqa.api import uploads
from kbqa.api.deps import PrincipalDep, ReadKb, ServicesDep, WriteKb, check_read, check_write
from kbqa.api.paths import public, public_source
from kbqa.api.schemas import DocumentList, DocumentRemoved, JobInfo
from kbqa.api.state import Services
from kbqa.errors import KbqaError, NotFound

log = logging.getLogger(__name__)
router = APIRouter(tags=["documents"])

LOCK_RETRY_SECONDS = 1.0  # an upload job waiting for another process's writer lock
ERRORS = {401: {}, 403: {}, 404: {}, 409: {}, 413: {}, 415: {}, 422: {}}


def _ingest_fn(services: Services, name: str):
    def run(paths: list[Path], progress) -> dict:
        from kbqa.config import IngestConfig
        from kbqa.ingest.progress import IngestCancelled
        from kbqa.kb import KnowledgeBase
        from kbqa.store.lock import WriterBusy

        # Its own writer instance: the shared reader keeps serving the last committed state.
        kb = KnowledgeBase.open(services.kbs.home, name)
        try:
            config = IngestConfig(split=kb.split_config(), load=services.settings.load_config())
            while True:
                try:
                    report = kb.ingest(paths, services.embedder, config, progress)
                    break
                except IngestCancelled:
                    # Dropped, or the next start would find them "not ingested" and resume
                    # the very job that was cancelled.
                    for path in uploads.not_ingested(kb, paths):
                        path.unlink(missing_ok=True)
                    raise
                except WriterBusy:
                    if progress.cancelled():
                        continue  # the next ingest() raises IngestCancelled before the lock
                    # The upload is acknowledged: another writer on this home (a second
                    # server, a CLI ingest) only delays it; failing here would leave it
                    # unindexed in uploads/ until a restart.
                    log.info("knowledge base %r is busy; job waits for its writer lock", name)
                    time.sleep(LOCK_RETRY_SECONDS)
        finally:
            kb.close()
        return report.to_dict()

    return run


def resume_uploads(services: Services) -> None:
    """At start-up, a job per KB for uploads a stopped server acknowledged but never ingested."""
    from kbqa.kb import list_kbs

    for name in list_kbs(services.kbs.home):
        try:
            pending = uploads.not_ingested(services.kbs.get(name))
        except KbqaError as e:  # one unreadable KB must not keep the server down
            log.warning("knowledge base %r not checked for unfinished uploads: %s", name, e)
            continue
        if pending:
            job = services.jobs.submit(name, pending, _ingest_fn(services, name))
            log.warning("%d upload(s) to %r were not ingested; job %s", len(pending), name, job.id)


@router.post("/v1/kbs/{kb}/documents", response_model=JobInfo, status_code=202, responses=ERRORS)
async def upload(
    kb: WriteKb,
    services: ServicesDep,
    files: Annotated[list[UploadFile], File(description="Documents to ingest.")],
) -> dict:
    """Upload documents; they are ingested in the background: poll GET /v1/jobs/{id}.

    A file with the name of an earlier upload replaces it (changed content is re-indexed).
    """
    from kbqa.ingest.loaders import SUPPORTED

    s = services.settings
    if len(files) > s.max_upload_files:
        raise HTTPException(
            413, f"{len(files)} files in one upload; the limit is {s.max_upload_files} "
            "(KBQA_MAX_UPLOAD_FILES)",
        )  # fmt: skip
    names = [uploads.safe_name(f.filename) for f in files]
    for name in names:
        uploads.check_type(name, SUPPORTED)
    if len(set(names)) != len(names):
        raise HTTPException(422, "two uploaded files have the same name; rename one")
    limit = int(s.max_upload_mb * 2**20)
    folder = kb.folder / uploads.UPLOADS
    saved = []
    for f, name in zip(files, names, strict=True):
        saved.append(await run_in_threadpool(uploads.save, f.file, folder, name, limit))
    job = services.jobs.submit(kb.name, saved, _ingest_fn(services, kb.name))
    return public(kb, job.to_dict())


@router.get("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"], responses=ERRORS)
def get_job(
    job_id: Annotated[str, PathParam(max_length=64)], services: ServicesDep, who: PrincipalDep
) -> dict:
    """An ingestion job: status queued|running|done|failed, progress, and the ingest report."""
    job = services.jobs.get(job_id)
    check_read(who, job.kb)
    try:
        return public(services.kbs.get(job.kb), job.to_dict())
    except KbqaError:  # its KB was deleted since: no folder left to name paths against
        return job.to_dict()


@router.delete("/v1/jobs/{job_id}", response_model=JobInfo, tags=["jobs"], responses=ERRORS)
def cancel_job(
    job_id: Annotated[str, PathParam(max_length=64)], services: ServicesDep, who: PrincipalDep
) -> dict:
    """Cancel an ingestion job: a queued one never starts, a running one stops at its next file
    or embedding batch (status ``cancelled``). Files it already committed stay; its uploads
    not yet ingested are deleted, so a restart does not resume it. 409 if it has finished."""
    job = services.jobs.get(job_id)
    check_write(who, job.kb)
    return services.jobs.cancel(job_id).to_dict()


@router.get("/v1/kbs/{kb}/documents", response_model=DocumentList, responses=ERRORS)
def list_documents(kb: ReadKb) -> dict:
    return {"kb": kb.name, "documents": public(kb, [d.to_dict() for d in kb.documents()])}


@router.delete("/v1/kbs/{kb}/documents/{doc_id}", response_model=DocumentRemoved, responses=ERRORS)
def remove_document(
    kb: WriteKb,
    doc_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)],
    services: ServicesDep,
) -> dict:
    """Remove one document and its chunks."""
    from kbqa.kb import KnowledgeBase

    doc = kb.store.document_by_id(doc_id)
    if doc is None:
        raise NotFound(f"no document with id {doc_id} in knowledge base {kb.name!r}")
    # The uploaded copy goes first: were it left behind (a crash between the two steps, or a
    # path compared unresolved), the next start would find it "not ingested" and bring the
    # document back. A copy gone with the row still there only needs the DELETE again.
    if uploads.is_upload(kb.folder, doc.source):
        Path(doc.source).unlink(missing_ok=True)
    writer = KnowledgeBase.open(services.kbs.home, kb.name)
    try:
        source, removed = writer.remove(doc.source)
    finally:
        writer.close()
    return {"kb": kb.name, "source": public_source(kb, source), "chunks_removed": removed}
