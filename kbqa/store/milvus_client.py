"""Milvus connections: one client per URI per process, the cluster token, error wording."""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from kbqa.errors import BadInput, ModelError, missing_package

if TYPE_CHECKING:
    from pydantic import SecretStr

CONNECT_TIMEOUT_S = 10.0

_clients: dict[str, object] = {}
# The credentials of a secure cluster, set by the edges (CLI, API start-up, LangChain opener)
# from Settings.milvus_token (KBQA_MILVUS_TOKEN): KBs open deep below them, and the URI that
# is passed down is kept in manifest.json, where a secret must never be.
_token = ""


def use_token(token: SecretStr | str | None) -> None:
    """Authenticate the Milvus clients made from now on (an empty/None token: none)."""
    global _token
    value = token.get_secret_value() if hasattr(token, "get_secret_value") else token
    if value != _token:
        # A cached client still holds the old credentials; only server clients carry any.
        for uri in [u for u in _clients if "://" in u]:
            close_quietly(_clients.pop(uri))
    _token = value or ""


class MilvusUnavailable(ModelError):
    """Milvus cannot be reached or refused a call.

    A ModelError on purpose: like a model that cannot run, a dead backing service must stop an
    ingestion batch (and be a 503 at the API) rather than mark every remaining file as failed.
    """


def collection_name(kb_name: str) -> str:
    """The Milvus collection of a KB: letters, digits and '_' only, unique per KB name.

    >>> collection_name("hr_policies"), collection_name("hr-policies")
    ('kbqa_hr_policies', 'kbqa_hr_policies_2072a2e5')
    """
    safe = re.sub(r"[^0-9A-Za-z_]", "_", kb_name)
    if safe == kb_name:
        return f"kbqa_{safe}"
    # '-', '.' and non-ASCII letters are not allowed in collection names; the hash keeps
    # "a-b" and "a.b" apart.
    return f"kbqa_{safe}_{hashlib.sha1(kb_name.encode()).hexdigest()[:8]}"


def normalise_uri(uri: str) -> str:
    """A server URI as given; a milvus-lite file made absolute so the KB works from any folder."""
    if "://" in uri:
        return uri
    if not uri.endswith(".db"):
        raise BadInput(
            f"Milvus URI {uri!r} is neither a server (http://host:19530) nor a milvus-lite "
            "file (a path ending in .db)"
        )
    return str(Path(uri).expanduser().resolve())


def close_quietly(client: object) -> None:
    # A dead server's client may fail to close; it is dropped either way.
    with contextlib.suppress(Exception):
        client.close()  # type: ignore[attr-defined]


def error_message(error: Exception) -> str:
    """What a pymilvus error says (its ``message``), else its text or type."""
    return getattr(error, "message", None) or str(error) or type(error).__name__


def connect(uri: str):
    """One client per URI per process (milvus-lite allows one opener of a file at a time)."""
    if uri in _clients:
        return _clients[uri]
    try:
        from pymilvus import MilvusClient
    except ImportError as e:
        raise missing_package("pymilvus", "milvus") from e
    if "://" not in uri:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    token = _token if "://" in uri else ""  # milvus-lite files take none
    try:
        client = MilvusClient(uri, token=token, timeout=CONNECT_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - pymilvus raises several types for a dead server
        raise MilvusUnavailable(
            f"Milvus at {uri} is unreachable ({error_message(e)}): start it, or check the URI "
            "(kbqa ingest --milvus-uri; an existing KB keeps the URI in its manifest.json)"
        ) from e
    _clients[uri] = client
    return client
