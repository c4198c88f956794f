"""The `kbqa` command line (typer); with api/, the only module that reads the environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kbqa.cli_common import JsonOpt, KbOpt, TopKOpt, command, emit, settings
from kbqa.config import IngestConfig, SplitConfig
from kbqa.errors import BadInput

app = typer.Typer(
    help="kbqa: ingest company documents into knowledge bases and answer questions from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts say "[env: KBQA_TOP_K; 5]"; rich markup would read that as a style tag and
    # drop it, so help is plain text (what an option falls back to is the point of its help).
    rich_markup_mode=None,
)
kb_app = typer.Typer(
    help="List, inspect and delete knowledge bases.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(kb_app, name="kb")


def open_kb(name: str | None):
    from kbqa.kb import KnowledgeBase

    s = settings()
    return KnowledgeBase.open(s.home, name or s.default_kb)


def embedder_for(spec: str | None):
    """The configured embedding model, else the KB's own, else the default; loaded lazily."""
    from kbqa.embed import load_embedder

    s = settings()
    return load_embedder(s.embedding_model or spec, s.embed_config())


def announced(embedder, spec: str | None, as_json: bool):
    """``embedder``, saying "loading the embedding model" on stderr before its first use
    (human output only: --json keeps stderr for errors)."""
    if as_json:
        return embedder
    from kbqa.cli_view import AnnouncedEmbedder

    return AnnouncedEmbedder(embedder, settings().embedding_model or spec or "default")


def shown(source: str) -> str:
    """A source path relative to the current folder when it lies below it."""
    try:
        return os.path.relpath(source) if not os.path.relpath(source).startswith("..") else source
    except ValueError:
        return source


@app.command()
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
    from kbqa.files import collect_files
    from kbqa.kb import KnowledgeBase, validate_name

    s = settings()
    name = validate_name(kb or s.default_kb)
    collect_files(paths)  # a missing path is a usage error before anything is touched
    existing = (s.home / name / "manifest.json").is_file()
    kb_obj = KnowledgeBase.open(s.home, name) if existing else None
    split = SplitConfig(
        chunk_size=chunk_size or (kb_obj.manifest.chunk_size if kb_obj else s.chunk_size),
        chunk_overlap=chunk_overlap
        if chunk_overlap is not None
        else (kb_obj.manifest.chunk_overlap if kb_obj else s.chunk_overlap),
    )
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
    embedder = embedder_for(spec)
    if kb_obj is None:
        kb_obj = KnowledgeBase.open_or_create(
            s.home, name, embedder, s.embedding_model or "default", split,
            vector_store=store or "faiss", milvus_uri=milvus_uri,
        )  # fmt: skip
    if as_json:
        report = kb_obj.ingest(paths, embedder, config)
        emit(report.to_dict())
    else:
        from kbqa.cli_view import AnnouncedEmbedder, IngestBar, print_ingest_report

        with IngestBar() as bar:
            label = s.embedding_model or spec or "default (multilingual-e5-small)"
            announced = AnnouncedEmbedder(embedder, label, bar.console)
            report = kb_obj.ingest(paths, announced, config, progress=bar)
        print_ingest_report(report, shown)
    if report.files_failed:
        raise typer.Exit(1)


@app.command()
@command
def search(
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    kb: KbOpt = None,
    top_k: TopKOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the passages of a knowledge base that best match a query."""
    from kbqa.retrieve import Retriever

    kb_obj = open_kb(kb)
    s = settings()
    k = top_k or s.top_k
    spec = kb_obj.manifest.embedding_spec
    # The Retriever REST search, ask, eval and LangChain use: CLI and REST give the same hits.
    retriever = Retriever(kb_obj, announced(embedder_for(spec), spec, as_json), s.retrieve_config())
    hits = retriever.search(query, k)
    if as_json:
        emit({"query": query, "hits": [h.to_dict() for h in hits]})
        return
    from kbqa.cli_view import print_hits

    print_hits(hits, shown)


@app.command()
@command
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KbOpt = None,
    top_k: TopKOpt = None,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="LLM spec, e.g. transformers:/models/glm-4 [env: KBQA_LLM; none: "
            "extractive answers].",
        ),
    ] = None,
    refusal_threshold: Annotated[
        float | None,
        typer.Option(
            help="Refuse below this relevance (best cosine + 0.1 x lexical coverage, -1..1.1) "
            "[env: KBQA_REFUSAL_THRESHOLD; default: calibrated per KB]."
        ),
    ] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print the answer as it comes.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Add scores and the prompt.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from a knowledge base, with its sources."""
    import dataclasses

    from kbqa.ask import Asker
    from kbqa.llm import load_generator
    from kbqa.prompt import load_prompts

    s = settings()
    kb_obj = open_kb(kb)
    config = s.ask_config()
    if refusal_threshold is not None:
        config = dataclasses.replace(config, refusal_threshold=refusal_threshold)
    prompts = load_prompts()
    generator = load_generator(llm or s.llm)
    spec = kb_obj.manifest.embedding_spec
    embedder = announced(embedder_for(spec), spec, as_json)
    asker = Asker(kb_obj, embedder, generator, prompts, config)
    answer = None
    for kind, value in asker.stream(question, top_k, debug=debug):
        if kind == "token" and stream and not as_json:
            print(value, end="", flush=True)
        elif kind == "done":
            answer = value
    if as_json:
        emit(answer.to_dict())
        return
    for notice in (answer.debug or {}).get("notices", []):
        print(f"notice: {notice}", file=sys.stderr)
    print("" if stream else answer.answer)
    if answer.sources:
        print(f"\nsources ({answer.mode}):")
    for n, hit in enumerate(answer.sources, 1):
        page = f" p.{hit.metadata['page']}" if "page" in hit.metadata else ""
        print(f"[{n}] {shown(hit.source)}{page}  {hit.score:.3f}")
    t = answer.timings
    print(f"({t.get('retrieve_ms', 0):.0f} ms retrieve, {t.get('generate_ms', 0):.0f} ms answer)")
    if debug:
        emit({k: v for k, v in (answer.debug or {}).items() if k != "notices"})


@kb_app.command("list")
@command
def kb_list(as_json: JsonOpt = False) -> None:
    """List the knowledge bases in KBQA_HOME."""
    from kbqa.kb import KnowledgeBase, list_kbs

    s = settings()
    infos = []
    for name in list_kbs(s.home):
        kb = KnowledgeBase.open(s.home, name)
        infos.append(kb.info())
        kb.close()
    if as_json:
        emit({"home": str(s.home), "kbs": infos})
        return
    from kbqa.cli_view import print_kb_list

    print_kb_list(s.home, infos)


@kb_app.command("show")
@command
def kb_show(
    name: Annotated[str, typer.Argument(help="Knowledge base name.")], as_json: JsonOpt = False
) -> None:
    """Show a knowledge base: its model, counts and documents (with their errors)."""
    kb = open_kb(name)
    info = kb.info()
    docs = [d.to_dict() for d in kb.documents()]
    if as_json:
        emit({**info, "documents": docs})
        return
    from kbqa.cli_view import print_kb_show

    print_kb_show(info, docs, shown)


@kb_app.command("delete")
@command
def kb_delete(
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a whole knowledge base."""
    kb = open_kb(name)
    if not yes and not as_json and sys.stdin.isatty():
        typer.confirm(f"Delete knowledge base {name!r} and all its chunks?", abort=True)
    kb.delete()
    if as_json:
        emit({"kb": name, "deleted": True})
    else:
        print(f"deleted knowledge base {name!r}")


@kb_app.command("remove")
@command
def kb_remove(
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    source: Annotated[
        str, typer.Argument(help="Document path, as ingested or a unique tail of it.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Remove one document and its chunks from a knowledge base."""
    kb = open_kb(name)
    removed_source, chunks = kb.remove(source)
    if as_json:
        emit({"kb": name, "source": removed_source, "chunks_removed": chunks})
    else:
        print(f"removed {shown(removed_source)} ({chunks} chunks) from {name!r}")


@app.command()
@command
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; beyond this machine needs API keys (or --allow-insecure)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    allow_insecure: Annotated[
        bool,
        typer.Option(
            "--allow-insecure",
            help="Listen beyond this machine without API keys: anyone who reaches the port may "
            "read, write and delete every knowledge base.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Serve the REST API, its docs (/docs) and the chat page (/); models load once at start.

    Beyond this machine it needs API keys; KBQA_PUBLIC_KBS lets readers ask without one.
    """
    from kbqa.api.security import KeyRing, is_loopback, public_kbs
    from kbqa.errors import BadInput

    s = settings()
    keys = KeyRing.from_settings(s)
    local = is_loopback(host)
    if not keys.enabled:
        if not local and not allow_insecure:
            raise BadInput(
                f"refusing to listen on {host} without API keys: set KBQA_API_KEYS or "
                "KBQA_API_KEYS_FILE (format in kbqa/api/security.py; KBQA_PUBLIC_KBS opens KBs "
                "to readers without a key), or pass --allow-insecure to let anyone who reaches "
                "the port read, write and delete every knowledge base"
            )
        where = "127.0.0.1 only" if local else f"{host} WITHOUT AUTHENTICATION"
        access = (
            "no API keys configured (KBQA_API_KEYS / KBQA_API_KEYS_FILE): listening on "
            f"{where}; every caller may read, write and delete every knowledge base"
        )
    else:
        public = sorted(public_kbs(s.public_kbs))
        readers = (
            f"readers without a key: {', '.join(public)}" if public else "every call needs a key"
        )
        access = f"{len(keys.keys)} API key(s); {readers}; writes need a key with write scope"
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown_host}:{port}"
    if as_json:
        emit({"host": host, "port": port, "url": url, "docs": f"{url}/docs", "auth": keys.enabled,
              "public_kbs": sorted(public_kbs(s.public_kbs)) if keys.enabled else ["*"]})  # fmt: skip
    print(f"{access}\nkbqa on {url} (page /, API docs /docs)", file=sys.stderr)
    import uvicorn

    uvicorn.run("kbqa.api.app:create_app", factory=True, host=host, port=port)


def _register_modules() -> None:
    """Commands that live beside the stage they drive."""
    from kbqa.eval_cli import register as register_eval
    from kbqa.feedback_cli import register as register_feedback
    from kbqa.finetune.cli import register as register_finetune

    register_finetune(app)
    register_eval(app)
    register_feedback(app)


_register_modules()


@app.callback()
def _options(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Folder of the knowledge bases [env: KBQA_HOME; default: ./indexes].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """kbqa: ingest company documents into knowledge bases and answer questions from them."""
    if home is not None:
        # Settings are read from the environment by each command: --home is KBQA_HOME.
        os.environ["KBQA_HOME"] = str(home)


from kbqa.cli_help import add_examples  # noqa: E402 - after every command is registered

add_examples(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
