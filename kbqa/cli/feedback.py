"""`kbqa feedback export`: the thumbs up/down given on the chat page, as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kbqa.cli.common import JsonOpt, KbOpt, command, command_group, emit, settings
from kbqa.errors import BadInput


def feedback_export(
    kb: KbOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write JSON lines here (default: stdout).")
    ] = None,
    vote: Annotated[
        str | None, typer.Option("--vote", help="Only 'up' or only 'down' votes.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a knowledge base's feedback (question, answer, vote, sources, comment) as JSONL."""
    from kbqa.feedback import read_feedback, summary

    if vote not in (None, "up", "down"):
        raise BadInput(f"--vote is 'up' or 'down', got {vote!r}")
    from kbqa.kb import KnowledgeBase

    s = settings()
    kb_obj = KnowledgeBase.open(s.home, kb or s.default_kb)
    records = list(read_feedback(kb_obj.folder, vote))
    counts = {"kb": kb_obj.name, **summary(records)}
    if out is not None:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        out.write_text(lines, encoding="utf-8")
        counts["out"] = str(out)
    if as_json:
        emit({**counts, **({} if out else {"records": records})})
    elif out is None:
        for r in records:
            print(json.dumps(r, ensure_ascii=False))
    else:
        print(f"{counts['total']} record(s) ({counts['up']} up, {counts['down']} down) -> {out}")


def register(app: typer.Typer) -> None:
    """Add the `feedback` group (its `export` command) to ``app``."""
    group = command_group("Review the thumbs up/down people gave answers on the chat page.")
    group.command("export")(command(feedback_export))
    app.add_typer(group, name="feedback")
