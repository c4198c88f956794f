"""Knowledge bases: list (those the key may read), create and delete (admin), show one."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from kbqa.api.deps import AdminDep, KbPath, PrincipalDep, ReadKb, ServicesDep
from kbqa.api.schemas import CreateKbRequest, Deleted, KbInfo, KbList
from kbqa.errors import Conflict, KbqaError

router = APIRouter(prefix="/v1/kbs", tags=["knowledge bases"])


def public_info(info: dict) -> dict:
    # The server's folders are no business of a client's.
    return {k: v for k, v in info.items() if k != "folder"}


@router.get("", response_model=KbList)
def list_kbs(services: ServicesDep, principal: PrincipalDep) -> dict:
    """The knowledge bases this key may read, with their counts."""
    from kbqa.kb import list_kbs as names

    infos = []
    for name in names(services.kbs.home):
        if principal.can_read(name):
            try:
                infos.append(public_info(services.kbs.get(name).info()))
            except KbqaError:
                continue  # deleted meanwhile, or damaged: other KBs are still listed
    return {"kbs": infos}


@router.post("", response_model=KbInfo, status_code=201, responses={409: {}, 422: {}})
def create_kb(body: CreateKbRequest, services: ServicesDep, _: AdminDep) -> dict:
    """Create an empty knowledge base built with the server's embedding model (admin)."""
    from kbqa.kb import KnowledgeBase, kb_exists, validate_name

    s = services.settings
    name = validate_name(body.name)
    if kb_exists(services.kbs.home, name):
        raise Conflict(f"knowledge base {name!r} already exists")
    split = s.split_config().override(body.chunk_size, body.chunk_overlap)
    kb = KnowledgeBase.open_or_create(
        services.kbs.home, name, services.embedder, s.embedding_model or "default", split
    )
    kb.close()
    return public_info(services.kbs.get(name).info())


@router.get("/{kb}", response_model=KbInfo, responses={403: {}, 404: {}})
def show_kb(kb: ReadKb) -> dict:
    return public_info(kb.info())


@router.delete("/{kb}", response_model=Deleted, responses={404: {}, 409: {}})
async def delete_kb(kb: KbPath, services: ServicesDep, _: AdminDep) -> dict:
    """Delete a whole knowledge base (admin); refused while an upload is being ingested."""
    shared = services.kbs.get(kb)
    if services.jobs.busy(kb):
        raise HTTPException(409, f"knowledge base {kb!r} is ingesting an upload; try again later")

    def delete() -> None:
        from kbqa.kb import KnowledgeBase

        services.kbs.forget(kb)
        writer = KnowledgeBase.open(services.kbs.home, shared.name)
        writer.delete()

    await run_in_threadpool(delete)
    return {"kb": kb, "deleted": True}
