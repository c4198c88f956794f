"""Commands `kbqa search` and `kbqa ask`: passages, and answers with their sources."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kbqa.cli import common
from kbqa.cli.common import (
    JsonOpt,
    KbOpt,
    TopKOpt,
    announced,
    command,
    emit,
    open_kb,
    settings,
    shown,
)


def _loaded(kb_obj, as_json: bool):
    """The KB's embedder, its query path loaded now, and the KB's indexes and jieba too: a load
    inside the first search would be counted in the retrieve time that ask prints (1.7 s for
    a 20 ms query in a fresh process: jieba's dictionary 0.7 s, its POS tables 0.8 s)."""
    from kbqa.embed.base import load_for_queries
    from kbqa.retrieval.signals import warm

    spec = kb_obj.manifest.embedding_spec
    embedder = load_for_queries(announced(common.embedder_for(spec), spec, as_json))
    kb_obj.indexes  # noqa: B018 - loads dense.faiss and lexical.npz now
    warm()
    return embedder


@command
def search(
    query: Annotated[str, typer.Argument(help="The question or keywords.")],
    kb: KbOpt = None,
    top_k: TopKOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the passages of a knowledge base that best match a query."""
    from kbqa.retrieval.retriever import Retriever

    kb_obj = open_kb(kb)
    s = settings()
    k = top_k or s.top_k
    # The Retriever REST search, ask, eval and LangChain use: CLI and REST give the same hits.
    retriever = Retriever(kb_obj, _loaded(kb_obj, as_json), s.retrieve_config())
    hits = retriever.search(query, k)
    if as_json:
        emit({"query": query, "hits": [h.to_dict() for h in hits]})
        return
    from kbqa.cli.view import print_hits

    print_hits(hits, shown)


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
    asker = Asker(kb_obj, _loaded(kb_obj, as_json), generator, prompts, config)
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


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(ask)
