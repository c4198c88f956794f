"""Command `kbqa eval`: score a KB on questions with known answers; metrics, report, chart."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from kbqa import cache_home
from kbqa.cli.common import JsonOpt, command, emit, settings


def squad_docs_folder(qa: Path) -> Path:
    """Where a SQuAD file's paragraphs are written: a cache outside the KB home (ingestion never
    walks into the home), one folder per file content, so reruns only hash the files."""
    digest = hashlib.sha256(qa.read_bytes()).hexdigest()[:10]
    return cache_home() / "squad" / f"{qa.stem}-{digest}"


def eval_command(
    qa: Annotated[
        Path,
        typer.Option(
            "--qa",
            help="Questions: jsonl rows {question, answers, source?} ([] answers: "
            "should refuse), or a SQuAD-style .json whose paragraphs are ingested into the KB.",
        ),
    ],
    kb: Annotated[
        str | None,
        typer.Option("--kb", help="Knowledge base name [env: KBQA_DEFAULT_KB, default: demo]."),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", "-k", min=1, max=100, help="Sources per answer.")
    ] = None,
    llm: Annotated[
        str | None, typer.Option("--llm", help="LLM spec [env: KBQA_LLM; none: extractive].")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for metrics.json, report.md, chart.png [KB/eval]."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions.")
    ] = None,
    timed: Annotated[
        int,
        typer.Option(
            "--timed",
            min=0,
            help="Questions asked one by one for the latency percentiles; the "
            "rest reuse batch-embedded queries (faster, same answers).",
        ),
    ] = 200,
    docs: Annotated[
        Path | None,
        typer.Option(
            "--docs",
            help="SQuAD input: folder for the paragraph files (default: under ~/.cache/kbqa/squad).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a knowledge base: retrieval hit@k and MRR, answer EM/F1, refusals, latency."""
    from kbqa.cli.common import embedder_for
    from kbqa.evaluate.metrics import is_squad, read_qa, read_squad, summarize
    from kbqa.evaluate.report import write_report
    from kbqa.evaluate.run import ingest_squad, run_eval
    from kbqa.kb import KnowledgeBase, kb_exists, validate_name
    from kbqa.llm import load_generator
    from kbqa.prompt import load_prompts

    s = settings()
    name = validate_name(kb or s.default_kb)
    if not qa.is_file():
        from kbqa.errors import NotFound

        raise NotFound(f"--qa {qa}: no such file")
    if is_squad(qa):
        squad = read_squad(qa)
        rows = squad.rows
        existing = kb_exists(s.home, name)
        spec = KnowledgeBase.open(s.home, name).manifest.embedding_spec if existing else None
        embedder = embedder_for(spec)
        kb_obj = KnowledgeBase.open_or_create(
            s.home, name, embedder, s.embedding_model or "default", s.split_config()
        )
        folder = docs or squad_docs_folder(qa)
        if as_json:
            report = ingest_squad(kb_obj, squad, folder, embedder)
        else:
            from kbqa.cli.view import IngestBar

            with IngestBar() as bar:
                report = ingest_squad(kb_obj, squad, folder, embedder, bar)
        for failure in report.files_failed:
            print(f"warning: {failure.path}: {failure.error}", file=sys.stderr)
    else:
        rows = read_qa(qa)
        kb_obj = KnowledgeBase.open(s.home, name)
        embedder = embedder_for(kb_obj.manifest.embedding_spec)
    rows = rows[:limit] if limit else rows
    generator = load_generator(llm or s.llm)
    run = {"generator": generator, "prompts": load_prompts(), "config": s.ask_config()}
    if as_json:
        results = run_eval(kb_obj, embedder, rows, top_k=top_k, timed=timed, **run)
    else:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("asking", total=len(rows))
            results = run_eval(
                kb_obj, embedder, rows, top_k=top_k, timed=timed,
                on_row=lambda: bar.advance(task), **run,
            )  # fmt: skip
    metrics = summarize(results)
    meta = {"kb": name, "qa": str(qa), "llm": llm or s.llm, "timed": min(timed, len(rows))}
    meta["embedding_model"] = embedder.model_id
    title = f"kbqa eval: {name} on {qa.name}"
    paths = write_report(out or kb_obj.folder / "eval", title, metrics, results, meta)
    if as_json:
        emit({**meta, **metrics, "files": paths})
        return
    _print_summary(metrics, paths)


def _print_summary(metrics: dict, paths: dict[str, str]) -> None:
    from kbqa.evaluate.report import QUALITY, REFUSAL, fmt

    print(f"{metrics['questions']} questions ({metrics['unanswerable']} should be refused)")
    for key in (*QUALITY, *REFUSAL):
        if key in metrics:
            print(f"  {key:18s} {fmt(metrics[key])}")
    for stage, v in metrics.get("latency_ms", {}).items():
        print(f"  {stage:18s} p50 {v['p50']:.1f} ms, p95 {v['p95']:.1f} ms")
    for what, path in paths.items():
        print(f"{what}: {path}")


def register(app: typer.Typer) -> None:
    """Add `kbqa eval` to ``app`` with the CLI's error handling."""

    app.command("eval")(command(eval_command))
