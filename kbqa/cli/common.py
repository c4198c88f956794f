"""What every `kbqa` command shares: the --json option, JSON output, and error reporting."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from kbqa.config import Settings, load_settings
from kbqa.errors import KbqaError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
KbOpt = Annotated[
    str | None,
    typer.Option("--kb", help="Knowledge base name [env: KBQA_DEFAULT_KB, default: demo]."),
]
TopKOpt = Annotated[
    int | None,
    typer.Option("--top-k", "-k", min=1, max=100, help="How many hits [env: KBQA_TOP_K; 5]."),
]


def settings() -> Settings:
    return load_settings()


def emit(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def fail(message: str, code: int, as_json: bool) -> typer.Exit:
    if as_json:
        emit({"error": message})
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def command(fn: Callable) -> Callable:
    """Turn KbqaErrors into a one-line message and the error's exit code, once, here."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KbqaError as e:
            raise fail(str(e), e.exit_code, bool(kwargs.get("as_json"))) from None
        except KeyboardInterrupt:
            raise fail("interrupted; everything committed before stays", 130, False) from None

    return wrapper


def open_kb(name: str | None):
    from kbqa.kb import KnowledgeBase

    s = settings()
    return KnowledgeBase.open(s.home, name or s.default_kb)


def embedder_for(spec: str | None):
    """The configured embedding model, else the KB's own, else the default; loaded lazily."""
    from kbqa.embed.factory import load_embedder

    s = settings()
    return load_embedder(s.embedding_model or spec, s.embed_config())


def announced(embedder, spec: str | None, as_json: bool):
    """``embedder``, saying "loading the embedding model" on stderr before its first use
    (human output only: --json keeps stderr for errors)."""
    if as_json:
        return embedder
    from kbqa.cli.view import AnnouncedEmbedder

    return AnnouncedEmbedder(embedder, settings().embedding_model or spec or "default")


def shown(source: str) -> str:
    """A source path relative to the current folder when it lies below it."""
    try:
        return os.path.relpath(source) if not os.path.relpath(source).startswith("..") else source
    except ValueError:
        return source


def command_group(help: str) -> typer.Typer:
    """A group of subcommands (``kbqa kb ...``): its help when called bare, plain-text help."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
