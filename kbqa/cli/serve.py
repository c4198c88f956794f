"""Command `kbqa serve`: the REST API, its docs and the chat page (uvicorn)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kbqa.cli.common import JsonOpt, command, emit, settings


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


def register(app: typer.Typer) -> None:
    app.command()(serve)
