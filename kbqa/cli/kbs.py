"""Commands `kbqa kb list|show|delete|remove`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kbqa.cli.common import JsonOpt, command, command_group, emit, open_kb, settings, shown


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
    from kbqa.cli.view import print_kb_list

    print_kb_list(s.home, infos)


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
    from kbqa.cli.view import print_kb_show

    print_kb_show(info, docs, shown)


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


def register(app: typer.Typer) -> None:
    kb_app = command_group("List, inspect and delete knowledge bases.")
    kb_app.command("list")(kb_list)
    kb_app.command("show")(kb_show)
    kb_app.command("delete")(kb_delete)
    kb_app.command("remove")(kb_remove)
    app.add_typer(kb_app, name="kb")
