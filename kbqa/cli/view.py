"""Human output of the CLI: the ingestion progress bar and rich tables (stdout stays parseable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kbqa.embed.base import load_for_queries
from kbqa.types import Hit, IngestReport

out = Console()
err = Console(stderr=True)


class IngestBar:
    """A progress bar on stderr: files done of total, chunks embedded, chunks/s and ETA."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self._task = None
        self._chunks = 0
        self._t0 = time.monotonic()

    @property
    def console(self) -> Console:
        """Lines printed here appear above the live bar instead of breaking it."""
        return self._progress.console

    def __enter__(self) -> IngestBar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def start(self, total_files: int) -> None:
        self._t0 = time.monotonic()
        self._task = self._progress.add_task("ingest", total=total_files, chunks=0, rate="0.0")

    def file_done(self, path: str, status: str) -> None:
        self._progress.advance(self._task)

    def chunks_done(self, n: int) -> None:
        self._chunks += n
        rate = self._chunks / max(time.monotonic() - self._t0, 1e-9)
        self._progress.update(self._task, chunks=self._chunks, rate=f"{rate:.1f}")


class AnnouncedEmbedder:
    """An embedder that says "loading the embedding model" on stderr before its first use.

    Loading takes tens of seconds on a first run; without a line, the bar sits at 0/N files
    and looks hung. Unchanged files never embed, so a re-run loads nothing and says nothing.
    """

    def __init__(self, inner, label: str, console: Console = err) -> None:
        self._inner, self._label, self._console, self._said = inner, label, console, False

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def _first(self, queries_only: bool = False) -> None:
        if not self._said:
            self._said = True
            self._console.print(f"loading the embedding model {self._label} ...", highlight=False)
            t0 = time.monotonic()
            if queries_only:
                load_for_queries(self._inner)
            else:
                self._inner.load()
            self._console.print(f"model loaded in {time.monotonic() - t0:.1f} s", highlight=False)

    def load(self) -> AnnouncedEmbedder:
        self._first()
        return self

    def load_queries(self) -> AnnouncedEmbedder:
        self._first(queries_only=True)
        return self

    def embed_passages(self, texts):
        self._first()
        return self._inner.embed_passages(texts)

    def embed_queries(self, texts):
        self._first()
        return self._inner.embed_queries(texts)


def print_ingest_report(report: IngestReport, shown: Callable[[str], str]) -> None:
    title = f"ingested into {report.kb!r} in {report.seconds:.1f} s"
    table = Table(title=title, show_header=False, min_width=cell_len(title) + 2)
    for key in ("files_seen", "files_added", "files_updated", "files_unchanged"):
        table.add_row(key.replace("_", " "), str(getattr(report, key)))
    table.add_row("files failed", str(len(report.files_failed)))
    table.add_row("chunks added", str(report.chunks_added))
    table.add_row("chunks removed", str(report.chunks_removed))
    out.print(table)
    for dup in report.files_duplicate:
        err.print(
            f"duplicate {shown(dup.path)}: same content as {shown(dup.same_as)}, not indexed again",
            highlight=False,
        )
    for failure in report.files_failed:
        err.print(f"[red]failed[/red] {shown(failure.path)}: {failure.error}", highlight=False)


def print_hits(hits: list[Hit], shown: Callable[[str], str]) -> None:
    if not hits:
        out.print("no hits")
        return
    for rank, hit in enumerate(hits, 1):
        where = shown(hit.source)
        if "page" in hit.metadata:
            where += f" p.{hit.metadata['page']}"
        out.print(f"[bold]{rank}.[/bold] {hit.score:.3f}  [cyan]{where}[/cyan]", highlight=False)
        out.print(f"   {hit.text.strip()[:300]}", highlight=False, markup=False)


def print_kb_list(home, infos: list[dict]) -> None:
    if not infos:
        out.print(f"no knowledge bases in {home}; create one with: kbqa ingest PATH --kb NAME")
        return
    table = Table(title=f"knowledge bases in {home}")
    for col in ("name", "documents", "failed", "chunks", "embedding model", "updated"):
        table.add_column(col)
    for i in infos:
        table.add_row(
            i["name"], str(i["documents"]), str(i["documents_failed"]), str(i["chunks"]),
            i["embedding_model"], _when(i["updated_at"]),
        )  # fmt: skip
    out.print(table)


def print_kb_show(info: dict, docs: list[dict], shown: Callable[[str], str]) -> None:
    summary = Table(title=f"knowledge base {info['name']!r}", show_header=False)
    for key in ("folder", "embedding_model", "dim", "chunk_size", "chunk_overlap", "documents",
                "documents_failed", "chunks"):  # fmt: skip
        summary.add_row(key.replace("_", " "), str(info[key]))
    out.print(summary)
    table = Table(title="documents")
    for col in ("id", "source", "status", "chunks", "updated", "error"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            str(d["id"]), shown(d["source"]), d["status"], str(d["chunks"]),
            _when(d["updated_at"]), d["error"] or "",
        )  # fmt: skip
    out.print(table)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
