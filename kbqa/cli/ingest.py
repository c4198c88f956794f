"""Command `kbqa ingest`: files and folders into a knowledge base (created on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbqa.cli import common
from kbqa.cli.common import JsonOpt, KbOpt, command, emit, settings, shown
from kbqa.config import IngestConfig
from kbqa.errors import BadInput


@command
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (walked recursively).")],
    kb: KbOpt = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only files matching this glob.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files matching this glob.")
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Chunk size in characters [env: KBQA_CHUNK_SIZE; 400; a KB keeps its own]."
        ),
    ] = None,
    chunk_overlap: Annotated[
        int | None,
        typer.Option(
            help="Overlap in characters [env: KBQA_CHUNK_OVERLAP; 60; a KB keeps its own]."
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="KBQA_VECTOR_STORE",
            help="Vector store of a new KB: faiss (in the KB folder) or milvus [env: "
            "KBQA_VECTOR_STORE; faiss; an existing KB keeps its own].",
        ),
    ] = None,
    milvus_uri: Annotated[
        str | None,
        typer.Option(
            "--milvus-uri",
            envvar="KBQA_MILVUS_URI",
            help="Milvus of a new --store milvus KB: http://host:19530, or a milvus-lite file "
            "ending in .db [env: KBQA_MILVUS_URI; kept in the KB's manifest].",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest documents into a knowledge base; unchanged files are skipped, changed ones replaced."""
    from kbqa.ingest.files import collect_files
    from kbqa.kb import KnowledgeBase, kb_exists, validate_name

    s = settings()
    name = validate_name(kb or s.default_kb)
    collect_files(paths)  # a missing path is a usage error before anything is touched
    kb_obj = KnowledgeBase.open(s.home, name) if kb_exists(s.home, name) else None
    own = kb_obj.split_config() if kb_obj else s.split_config()
    split = own.override(chunk_size, chunk_overlap)
    config = IngestConfig(
        include=tuple(include or ()), exclude=tuple(exclude or ()), split=split,
        load=s.load_config(),
    )  # fmt: skip
    if kb_obj and store and store != kb_obj.manifest.vector_store:
        raise BadInput(
            f"knowledge base {name!r} keeps its vectors in {kb_obj.manifest.vector_store}; "
            f"--store {store} only applies when a KB is created: drop it, or ingest into a new KB"
        )
    spec = kb_obj.manifest.embedding_spec if kb_obj else None
    embedder = common.embedder_for(spec)  # looked up per call: tests swap it
    if kb_obj is None:
        kb_obj = KnowledgeBase.open_or_create(
            s.home, name, embedder, s.embedding_model or "default", split,
            vector_store=store or "faiss", milvus_uri=milvus_uri,
        )  # fmt: skip
    if as_json:
        report = kb_obj.ingest(paths, embedder, config)
        emit(report.to_dict())
    else:
        from kbqa.cli.view import AnnouncedEmbedder, IngestBar, print_ingest_report

        with IngestBar() as bar:
            label = s.embedding_model or spec or "default (multilingual-e5-small)"
            announced = AnnouncedEmbedder(embedder, label, bar.console)
            report = kb_obj.ingest(paths, announced, config, progress=bar)
        print_ingest_report(report, shown)
    if report.files_failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
