"""The `kbqa` typer app: wires every command module's ``register(app)``; no command lives here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kbqa.cli import eval as eval_commands
from kbqa.cli import feedback, finetune, ingest, kbs, query, serve
from kbqa.cli.help import add_examples

app = typer.Typer(
    help="kbqa: ingest company documents into knowledge bases and answer questions from them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts say "[env: KBQA_TOP_K; 5]"; rich markup would read that as a style tag and
    # drop it, so help is plain text (what an option falls back to is the point of its help).
    rich_markup_mode=None,
)

# The order commands were always registered in (help lists them this way).
for module in (ingest, query, kbs, serve, finetune, eval_commands, feedback):
    module.register(app)


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


add_examples(app)  # after every command is registered


def main() -> None:
    app()
